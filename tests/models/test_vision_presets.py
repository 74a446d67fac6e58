"""Vision presets: the recipe wins field by field; unknown presets name the field."""

from __future__ import annotations

import pytest

from llavaforge.config.presets import LLM_ROLE, PRESETS, TINY_PREFIX, VLM_ROLES, describe_presets
from llavaforge.config.recipe import Recipe, RecipeError, load_recipe
from llavaforge.models.tiny import BUILDERS


def _effective(preset=None, **overrides):
    return load_recipe(None, {**({"preset": preset} if preset else {}), **overrides}).annotate


def test_no_preset_no_roles():
    assert _effective().active_roles() == []


def test_offline_has_tagger_and_ocr_only():
    config = _effective("offline")
    assert [role for role, _ in config.active_roles()] == ["tagger", "ocr"]
    assert "No captioner or detector" in PRESETS["offline"].description


def test_recipe_fields_win_over_the_preset():
    config = _effective("tiny", **{"annotate.captioner.max_batch_size": 3, "annotate.tagger.enabled": False,
                                   "annotate.ocr.model": "rapidocr"})
    assert config.captioner.max_batch_size == 3
    assert config.captioner.model == TINY_PREFIX + "blip"  # the rest comes from the preset
    assert [role for role, _ in config.active_roles()] == ["captioner", "detector", "ocr"]


def test_unknown_preset_names_the_field():
    with pytest.raises(RecipeError, match="`preset`.*'bogus'"):
        _effective("bogus")
    with pytest.raises(ValueError, match="preset.*'bogus'"):
        Recipe(preset="bogus")


def test_bad_merged_value_names_the_field():
    with pytest.raises(Exception, match="max_batch_size"):
        _effective("tiny", **{"annotate.captioner.max_batch_size": 0})


def test_tiny_covers_every_hub_architecture():
    hub_kinds = {entry.config["kind"] for role, entry in PRESETS["hub"].roles.items()
                 if role not in (LLM_ROLE, *VLM_ROLES)} - {"rapidocr"}
    tiny_kinds = {"blip", "git", "vision-encoder-decoder", "detr", "rt-detr", "owlv2", "clip", "classification"}
    assert hub_kinds <= tiny_kinds
    assert {"blip", "git", "vit-bert", "detr", "rt-detr", "owlv2", "clip", "vit-classifier"} <= set(BUILDERS)


def test_describe_lists_every_preset_role_and_license():
    text = describe_presets()
    for name, preset in PRESETS.items():
        assert f"{name}:" in text
        for entry in preset.roles.values():
            assert entry.config["model"] in text and entry.license in text
