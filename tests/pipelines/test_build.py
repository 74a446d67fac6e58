"""The graph builder: which stages a recipe turns on, each with its own section."""

from __future__ import annotations

import pytest

from llavaforge.config.check import CheckConfig, CheckSwitch
from llavaforge.config.recipe import Recipe, RecipeError, load_recipe
from llavaforge.pipelines.build import enabled_stages
from llavaforge.transforms.annotate import Annotate
from llavaforge.transforms.check import Check
from llavaforge.transforms.dedup import NearDedup
from llavaforge.transforms.question_dedup import QuestionDedup
from llavaforge.transforms.synthesize import Synthesize

CHECKS = tuple(name for name, info in CheckConfig.model_fields.items()
               if isinstance(info.annotation, type) and issubclass(info.annotation, CheckSwitch))


def labels(recipe: Recipe) -> list[str]:
    return [label for label, _ in enabled_stages(recipe)]


def test_annotate_always_runs_and_synthesis_brings_checks_and_question_dedup():
    assert labels(Recipe()) == ["Annotate"]  # source text still becomes captions
    stages = dict(enabled_stages(load_recipe(None, {"preset": "tiny"})))
    assert list(stages) == ["Annotate", "Synthesize", "Check", "QuestionDedup", "HoldForReview"]
    assert isinstance(stages["Annotate"], Annotate) and isinstance(stages["Synthesize"], Synthesize)
    assert isinstance(stages["Check"], Check) and isinstance(stages["QuestionDedup"], QuestionDedup)


def test_sections_switch_stages_off():
    near = dict(enabled_stages(Recipe.model_validate({"dedup": {"near": {"enabled": True, "max_distance": 4}}})))
    assert isinstance(near["NearDedup"], NearDedup)
    assert labels(load_recipe(None, {"preset": "tiny", "synthesize.tasks": []})) == ["Annotate"]
    assert labels(load_recipe(None, {"preset": "tiny", "check.enabled": False})) == [
        "Annotate", "Synthesize", "QuestionDedup", "HoldForReview"]
    assert "HoldForReview" not in labels(load_recipe(None, {"preset": "tiny", "write.flagged": "include"}))
    every_check_off = {f"check.{name}.enabled": False for name in CHECKS}
    assert "Check" not in labels(load_recipe(None, {"preset": "tiny", **every_check_off}))
    assert "QuestionDedup" not in labels(load_recipe(None, {"preset": "tiny", "check.questions.enabled": False}))


def test_a_task_without_a_prompt_file_is_a_recipe_error():
    with pytest.raises(RecipeError, match="ocr_qa"):
        enabled_stages(load_recipe(None, {"preset": "tiny", "synthesize.tasks": ["ocr_qa"]}))


def test_the_verifier_runs_after_the_checks_and_only_with_synthesis():
    from llavaforge.transforms.verify import Verify

    stages = dict(enabled_stages(load_recipe(None, {"preset": "tiny", "verify.enabled": True})))
    assert list(stages) == ["Annotate", "Synthesize", "Check", "Verify", "QuestionDedup", "HoldForReview"]
    assert isinstance(stages["Verify"], Verify)
    assert labels(load_recipe(None, {"preset": "tiny", "verify.enabled": True, "synthesize.tasks": []})) == ["Annotate"]


def test_a_malformed_vlm_prompt_file_is_a_recipe_error(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: verify\nversion: 1\nsystem: s\nquery: no slot\n")
    with pytest.raises(RecipeError, match=r"verify\.prompt_file.*\{answers\}"):
        enabled_stages(load_recipe(None, {"preset": "tiny", "verify.enabled": True, "verify.prompt_file": str(bad)}))
    bad.write_text("kind: verify\nversion: 1\nsystem: s\nquery: '{answers}'\n")
    with pytest.raises(RecipeError, match=r"annotate\.dense_captioner\.prompt_file.*expected 'dense_caption'"):
        enabled_stages(load_recipe(None, {"preset": "tiny", "annotate.dense_captioner.enabled": True,
                                          "annotate.dense_captioner.prompt_file": str(bad)}))
