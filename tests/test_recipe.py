from pathlib import Path

import pytest

from llavaforge.config.recipe import Recipe, RecipeError, load_recipe, parse_override, recipe_reference


def test_defaults_validate_and_hash_is_stable():
    assert Recipe().hash() == Recipe().hash()
    assert Recipe(seed=1).hash() != Recipe().hash()


def test_yaml_and_overrides(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("decode:\n  min_side: 16\nwrite:\n  images_per_shard: 5\n")
    recipe = load_recipe(str(path), {"decode.max_aspect_ratio": 4.0})
    assert recipe.decode.min_side == 16
    assert recipe.decode.max_aspect_ratio == 4.0
    assert recipe.write.images_per_shard == 5


@pytest.mark.parametrize("overrides, field", [
    ({"decode.min_side": 0}, "decode.min_side"),
    ({"decode.min_sidee": 3}, "decode.min_sidee"),
    ({"write.images_per_shard": "many"}, "write.images_per_shard"),
    ({"decode.reencode_format": "gif"}, "decode.reencode_format"),
])
def test_errors_name_the_field_and_value(overrides, field):
    with pytest.raises(RecipeError) as err:
        load_recipe(None, overrides)
    assert f"`{field}`" in str(err.value)


def test_bad_files(tmp_path):
    with pytest.raises(RecipeError, match="not found"):
        load_recipe(str(tmp_path / "missing.yaml"))
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(RecipeError, match="mapping"):
        load_recipe(str(tmp_path / "list.yaml"))


def test_parse_override_reads_yaml_values():
    assert parse_override("decode.min_side=64") == ("decode.min_side", 64)
    assert parse_override("read.text_column=alt") == ("read.text_column", "alt")
    with pytest.raises(RecipeError):
        parse_override("nonsense")


def test_reference_lists_every_section_with_defaults():
    text = recipe_reference()
    for section in ("read:", "decode:", "dedup:", "write:"):
        assert section in text
    assert "min_side: 32" in text


def test_example_recipe_validates_with_its_preset():
    recipe = load_recipe(str(Path(__file__).resolve().parent.parent / "examples" / "recipe.yaml"))
    assert (recipe.synthesize.backend, recipe.synthesize.openai.api_key_env) == ("openai", "LLAVAFORGE_LLM_KEY")
    assert recipe.annotate.detector.score_threshold == 0.6 and recipe.annotate.detector.device == "cuda"


def test_hash_covers_what_presets_fill_in(monkeypatch):
    """Synthesis switched off over a preset, or a preset's own value edited in code, changes
    the hash: the hash is of the resolved recipe, not of what was written."""
    from llavaforge.config import presets

    tiny = load_recipe(None, {"preset": "tiny"})
    assert load_recipe(None, {"preset": "tiny", "synthesize.tasks": []}).hash() != tiny.hash()
    llm = presets.PRESETS["tiny"].roles[presets.LLM_ROLE]
    edited = llm._replace(config={**llm.config, "max_new_tokens": llm.config["max_new_tokens"] + 1})
    monkeypatch.setitem(presets.PRESETS["tiny"].roles, presets.LLM_ROLE, edited)
    assert load_recipe(None, {"preset": "tiny"}).hash() != tiny.hash()


def test_resolved_recipe_is_frozen_and_stable():
    recipe = load_recipe(None, {"preset": "offline"})
    assert recipe.annotate.tagger.model == "efficientnet-lite0" and recipe.synthesize.enabled
    again = Recipe.model_validate(recipe.model_dump())  # resolving again changes nothing
    assert again.model_dump() == recipe.model_dump() and again.hash() == recipe.hash()
    with pytest.raises(Exception):
        recipe.seed = 3
