"""The VLM roles' recipe fields: documented, validated with errors naming the field, filled by
presets (off until turned on), hashed with their prompt files, one engine for equal settings."""

from __future__ import annotations

import pytest

from llavaforge.config import prompts
from llavaforge.config.presets import PRESETS, VERIFIER_ROLE, VLM_ROLE, VLM_ROLES
from llavaforge.config.recipe import RecipeError, load_recipe
from llavaforge.config.verify import VerifyConfig
from llavaforge.config.vlm import DenseCaptionerConfig, VlmConfig

ALL_ROLES = {"annotate.dense_captioner.enabled": True, "verify.enabled": True,
             "synthesize.task_modes": {"detail": "vlm"}}


@pytest.mark.parametrize("model", [VlmConfig, DenseCaptionerConfig, VerifyConfig])
def test_every_field_is_documented(model):
    def walk(cls):
        for name, info in cls.model_fields.items():
            annotation = info.annotation
            assert info.description, f"{cls.__name__}.{name}"
            if isinstance(annotation, type) and hasattr(annotation, "model_fields"):
                walk(annotation)
    walk(model)


@pytest.mark.parametrize("preset", ["tiny", "hub"])
def test_presets_fill_the_three_roles_with_one_model_and_leave_them_off(preset):
    recipe = load_recipe(None, {"preset": preset})
    dense, vlm, verify = recipe.annotate.dense_captioner, recipe.synthesize.vlm, recipe.verify
    assert not dense.enabled and not verify.enabled and recipe.synthesize.vision_tasks == []
    assert dense.model == vlm.model == verify.model == PRESETS[preset].roles[VLM_ROLE].config["model"]
    assert "dense_captioner" not in [role for role, _ in recipe.annotate.active_roles()]
    on = load_recipe(None, {"preset": preset, **ALL_ROLES})
    keys = {on.annotate.dense_captioner.engine_key(), on.synthesize.vlm.engine_key(), on.verify.engine_key()}
    assert len(keys) == 1  # one loaded model serves the three roles
    assert on.synthesize.vision_tasks == ["detail"] and on.verify.enabled
    assert on.annotate.active_roles()[-1][0] == "dense_captioner"


def test_hub_vlm_runs_on_the_gpu_and_tiny_on_the_cpu():
    hub = load_recipe(None, {"preset": "hub", **ALL_ROLES})
    assert hub.verify.on_gpu and hub.annotate.dense_captioner.on_gpu and hub.synthesize.on_gpu
    tiny = load_recipe(None, {"preset": "tiny", **ALL_ROLES})
    assert not (tiny.verify.on_gpu or tiny.annotate.dense_captioner.on_gpu)
    assert all(role in PRESETS["tiny"].roles and role in PRESETS["hub"].roles for role in VLM_ROLES)


def test_recipe_fields_win_over_the_preset_vlm():
    recipe = load_recipe(None, {"preset": "tiny", **ALL_ROLES, "verify.backend": "openai", "verify.model": "served",
                                "synthesize.vlm.max_new_tokens": 7})
    assert recipe.verify.backend == "openai" and recipe.verify.model == "served"
    assert recipe.synthesize.vlm.max_new_tokens == 7 and recipe.synthesize.vlm.model == "llavaforge-tiny/smolvlm"
    assert recipe.synthesize.vlm.engine_key() != recipe.verify.engine_key()


@pytest.mark.parametrize("overrides, field", [
    ({"verify.enabled": True}, "verify"),
    ({"annotate.dense_captioner": {"enabled": True}}, "annotate.dense_captioner"),
    ({"synthesize.tasks": ["detail"], "synthesize.model": "m", "synthesize.task_modes": {"detail": "vlm"}},
     "synthesize"),
    ({"synthesize.task_modes": {"detail": "seeing"}}, "synthesize.task_modes.detail"),
    ({"verify.backend": "tgi"}, "verify.backend"),
    ({"verify.max_image_side": 4}, "verify.max_image_side"),
    ({"verify.contradicted": "drop"}, "verify.contradicted"),
    ({"verify.hf.compile": True, "verify.hf.static_decode": False}, "verify.hf"),
    ({"verify.openai.api_key_env": "sk-abc def"}, "verify.openai.api_key_env"),
    ({"verify.tasks": ["detail", "detail"]}, "verify.tasks"),
    ({"verify.dtype": "fp16"}, "verify"),
    ({"verify.kind": "blip"}, "verify.kind"),
])
def test_bad_fields_are_named(overrides, field):
    with pytest.raises(RecipeError, match=f"`{field.replace('.', '[.]')}`"):
        load_recipe(None, overrides)


def test_a_vlm_model_is_required_by_the_roles_that_are_on():
    with pytest.raises(RecipeError, match="synthesize.vlm.model is required"):
        load_recipe(None, {"synthesize.tasks": ["detail"], "synthesize.model": "m",
                           "synthesize.task_modes": {"detail": "vlm"}})
    with pytest.raises(RecipeError, match="`model` is required"):
        load_recipe(None, {"verify.enabled": True})
    off = load_recipe(None, {"preset": "tiny", "synthesize.task_modes": {"detail": "vlm"},
                             "synthesize.vlm.enabled": False})
    assert off.synthesize.vision_tasks == [] and "detail" in off.synthesize.llm_tasks


def test_hash_covers_the_vlm_prompt_files_only_when_their_role_runs(tmp_path, monkeypatch):
    tiny = load_recipe(None, {"preset": "tiny"}).hash()
    on = load_recipe(None, {"preset": "tiny", **ALL_ROLES})
    assert on.hash() != tiny and set(on.vision_prompt_files()) == {"dense_caption", "verify"}
    own = tmp_path / "verify.yaml"
    own.write_text((prompts.PACKAGED_VISION_PROMPTS / "verify.yaml").read_text())
    same = load_recipe(None, {"preset": "tiny", **ALL_ROLES, "verify.prompt_file": str(own)})
    own.write_text(own.read_text().replace("nothing else", "nothing more"))
    edited = load_recipe(None, {"preset": "tiny", **ALL_ROLES, "verify.prompt_file": str(own)})
    assert same.hash() != edited.hash()  # the file's content, not its name... 
    assert same.hash() != on.hash()  # ...and the path is a recipe field too
    packaged = prompts.PACKAGED_VISION_PROMPTS / "dense_caption.yaml"
    monkeypatch.setattr(prompts, "PACKAGED_VISION_PROMPTS", tmp_path)
    (tmp_path / "dense_caption.yaml").write_text(packaged.read_text() + "\n# edited\n")
    assert load_recipe(None, {"preset": "tiny", **ALL_ROLES}).hash() != on.hash()


def test_a_missing_prompt_file_names_the_field(tmp_path):
    with pytest.raises(RecipeError, match=r"annotate\.dense_captioner\.prompt_file"):
        load_recipe(None, {"preset": "tiny", "annotate.dense_captioner.enabled": True,
                           "annotate.dense_captioner.prompt_file": str(tmp_path / "nope.yaml")})
