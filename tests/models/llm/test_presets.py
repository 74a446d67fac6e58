import pytest

from llavaforge.config.presets import LLM_ROLE, PRESETS, describe_presets
from llavaforge.config.recipe import RecipeError, load_recipe
from llavaforge.config.synthesize import HfBackendConfig, SynthesizeConfig

LLM_PRESETS = {name: preset.roles[LLM_ROLE].config for name, preset in PRESETS.items()}


def effective(overrides=None):
    return load_recipe(None, overrides or {}).synthesize


def test_synthesis_is_off_without_tasks_or_preset():
    assert not SynthesizeConfig().enabled
    assert not effective().enabled


@pytest.mark.parametrize("preset", sorted(LLM_PRESETS))
def test_each_preset_turns_synthesis_on_with_a_model(preset):
    config = effective({"preset": preset})
    assert config.enabled and config.model
    assert config.tasks == ["conversation", "detail", "reasoning"]


def test_explicit_recipe_fields_win_over_the_preset_down_to_nested_fields():
    config = effective({"preset": "hub", "synthesize.max_new_tokens": 7,
                        "synthesize.sampling.temperature": 0.5, "synthesize.tasks": ["detail"]})
    assert config.max_new_tokens == 7 and config.tasks == ["detail"]
    assert config.sampling.temperature == 0.5
    assert config.sampling.top_p == LLM_PRESETS["hub"]["sampling"]["top_p"]  # the preset's, not the default
    assert config.model == LLM_PRESETS["hub"]["model"] and config.backend == "vllm"


def test_a_preset_can_be_switched_off_by_the_recipe():
    assert not effective({"preset": "tiny", "synthesize.tasks": []}).enabled


def test_tasks_without_a_model_and_unknown_presets_name_the_field():
    with pytest.raises(RecipeError, match="synthesize.model"):
        effective({"synthesize.tasks": ["detail"]})
    with pytest.raises(RecipeError, match="`preset`"):
        effective({"preset": "huge"})


@pytest.mark.parametrize("overrides, field", [
    ({"synthesize.backend": "llama"}, "synthesize.backend"),
    ({"synthesize.tasks": ["detail", "detail"]}, "synthesize.tasks"),
    ({"synthesize.task_weights": {"detail": -1}}, "synthesize.task_weights"),
    ({"synthesize.sampling.top_p": 0}, "synthesize.sampling.top_p"),
    ({"synthesize.hf.compile": True, "synthesize.hf.static_cache": False}, "synthesize.hf"),
    ({"synthesize.openai.api_key_env": "sk-abc def"}, "synthesize.openai.api_key_env"),
    ({"synthesize.min_batch_size": 9, "synthesize.max_batch_size": 2}, "synthesize"),
    ({"synthesize.temprature": 1}, "synthesize.temprature"),
])
def test_bad_fields_are_named(overrides, field):
    with pytest.raises(RecipeError, match=field.replace(".", r"\.")):
        load_recipe(None, overrides)


def test_compile_is_allowed_with_a_static_cache():
    assert HfBackendConfig(static_cache=True, compile=True).compile


def test_every_field_is_documented():
    def walk(model):
        for name, info in model.model_fields.items():
            annotation = info.annotation
            if isinstance(annotation, type) and hasattr(annotation, "model_fields"):
                walk(annotation)
            else:
                assert info.description, f"{model.__name__}.{name}"
    walk(SynthesizeConfig)


def test_describe_names_every_preset_model_with_size_and_license():
    text = describe_presets()
    for preset in PRESETS.values():
        entry = preset.roles[LLM_ROLE]
        assert entry.config["model"] in text and entry.size in text and entry.license in text


def test_lowering_max_batch_size_lowers_the_presets_full_batch_minimum():
    config = effective({"preset": "tiny", "synthesize.max_batch_size": 4})
    assert (config.min_batch_size, config.max_batch_size) == (4, 4)
