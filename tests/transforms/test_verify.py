"""The Verify stage: a VLM's verdicts on each image's answers become rejects or flags.

A stand-in VLM (an engine that returns fixed text per image) judges planted claims about the
bundled photos: the false ones ("It is a helicopter" for the cameraman's tripod, "the dog" in
the coffee-cup picture) are rejected, the true ones kept; an image that breaks the model is
one image's reject; the same through an OpenAI-compatible endpoint, written and verified."""

from __future__ import annotations

import functools
from pathlib import Path

import apache_beam as beam
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that

from llavaforge.config.recipe import load_recipe
from llavaforge.config.sections import WriteConfig
from llavaforge.config.verify import VerifyConfig
from llavaforge.jobs.verify import verify_run
from llavaforge.models.llm.base import Generation
from llavaforge.models.vlm import handler
from llavaforge.models.vlm.base import VlmEngine
from llavaforge.schemas.record import Conversation, Turn
from llavaforge.transforms.verify import (CONTRADICTED_REASON, ERROR_REASON, NO_VERDICT_REASON, STAGE,
                                          UNSURE_REASON, Verify, judge)
from llavaforge.transforms.write import WriteOutputs
from tests.models.vision_samples import photo
from tests.models.vlm.image_fault_server import ImageFaultServer

KEY = "sk-verify-secret-never-written-3"


def chat(task: str, *pairs: tuple[str, str]) -> Conversation:
    turns = []
    for i, (question, answer) in enumerate(pairs):
        turns += [Turn("human", ("<image>\n" if i == 0 else "") + question), Turn("gpt", answer)]
    return Conversation(task, turns, backend="hf", model="llm")


def camera():
    return photo("camera").replace(conversations=[
        chat("conversation", ("What is the man holding?", "It is a helicopter.")),
        chat("reasoning", ("What is the man doing?", "He stands behind a camera on a tripod."))])


def coffee():
    return photo("coffee").replace(conversations=[
        chat("conversation", ("What is on the table?", "A cup of coffee on a saucer."),
             ("Who is next to it?", "The dog sits beside the cup."))])


REPLIES = {  # what the stand-in VLM says about each photo's numbered answers
    "camera": "1. CONTRADICTED: the man holds a camera on a tripod, not a helicopter.\n2. SUPPORTED",
    "coffee": "1. SUPPORTED\n2. CONTRADICTED: there is no dog in the picture.",
}


class FixedTextVlm(VlmEngine):
    """A stand-in VLM: fixed text per image; raises on any batch holding a `poison` image."""

    def __init__(self, replies: dict[str, str], poison: frozenset = frozenset()) -> None:
        super().__init__()
        self.replies = replies
        self.poison = poison
        self.prompts = []

    def generate(self, requests, settings):
        if any(r.image.sha256 in self.poison for r in requests):
            raise RuntimeError("CUDA error: an illegal memory access")
        self.prompts += [r.messages[-1]["content"] for r in requests]
        return [Generation(self.replies[r.image.sha256], 100, 20) for r in requests]


def stand_in(monkeypatch, config: VerifyConfig, replies: dict[str, str], poison=()) -> FixedTextVlm:
    engine = FixedTextVlm({photo(name).image.sha256: text for name, text in replies.items()},
                          frozenset(photo(name).image.sha256 for name in poison))
    monkeypatch.setitem(handler._engines, config.engine_key(), engine)
    return engine


def verify_config(**overrides) -> VerifyConfig:
    return load_recipe(None, {"preset": "tiny", "verify.enabled": True,
                              **{f"verify.{k}": v for k, v in overrides.items()}}).verify


_collected: dict[str, list] = {}


def _collect(name: str, actual) -> None:
    _collected[name] = list(actual)  # module-level: the in-process runner fills this module's dict


def run(records, config):
    _collected.clear()
    with TestPipeline() as p:
        out, rejects = p | beam.Create(records) | Verify(config)
        assert_that(out, functools.partial(_collect, "records"), label="Records")
        assert_that(rejects, functools.partial(_collect, "rejects"), label="Rejects")
    return {r.source.member: r for r in _collected["records"]}, _collected["rejects"]


def test_a_stand_in_vlm_rejects_the_planted_false_claims_and_keeps_the_true_ones(monkeypatch):
    config = verify_config()
    engine = stand_in(monkeypatch, config, REPLIES)
    untouched = photo("rocket")  # no conversation: nothing to verify
    records, rejects = run([camera(), coffee(), untouched], config)
    assert [c.task for c in records["camera.jpg"].conversations] == ["reasoning"]
    assert records["rocket.jpg"] == untouched and "coffee.jpg" not in records
    summary = sorted((r.source_member, r.stage, r.reason, r.task) for r in rejects)
    assert summary == [("camera.jpg", STAGE, CONTRADICTED_REASON, "conversation"),
                       ("coffee.jpg", STAGE, "no_valid_conversation", None),
                       ("coffee.jpg", STAGE, CONTRADICTED_REASON, "conversation")]
    helicopter = next(r for r in rejects if r.source_member == "camera.jpg")
    assert "not a helicopter" in helicopter.detail and "It is a helicopter." in helicopter.detail
    assert "[verify-v1-" in helicopter.detail  # the prompt version that judged it
    camera_prompt = next(p for p in engine.prompts if "helicopter" in p)
    assert "1. Question: What is the man holding?\n   Answer: It is a helicopter." in camera_prompt
    assert "2. Question: What is the man doing?" in camera_prompt  # all answers of an image in one request


def test_actions_flag_or_ignore_instead_of_rejecting(monkeypatch):
    config = verify_config(contradicted="flag")
    stand_in(monkeypatch, config, {"camera": "1. CONTRADICTED: a tripod\n2. UNSURE: cannot see his hands"})
    records, rejects = run([camera()], config)
    assert rejects == []
    assert [tuple(c.flags) for c in records["camera.jpg"].conversations] == [(CONTRADICTED_REASON,), (UNSURE_REASON,)]
    config = verify_config(contradicted="ignore", unsure="ignore")
    stand_in(monkeypatch, config, {"camera": "1. CONTRADICTED: a tripod\n2. UNSURE: cannot see"})
    records, rejects = run([camera()], config)
    assert rejects == [] and all(not c.flags for c in records["camera.jpg"].conversations)


def test_an_image_that_breaks_the_model_is_that_images_retryable_reject_only(monkeypatch):
    config = verify_config(max_batch_size=4, min_batch_size=4)
    stand_in(monkeypatch, config, REPLIES, poison=("coffee",))
    records, rejects = run([camera(), coffee()], config)
    assert [c.task for c in records["camera.jpg"].conversations] == ["reasoning"]  # judged as before
    failed = sorted((r.reason, r.task, r.retryable) for r in rejects if r.source_member == "coffee.jpg")
    assert failed == [("no_valid_conversation", None, True), (ERROR_REASON, "conversation", True)]
    assert "illegal memory access" in next(r.detail for r in rejects if r.reason == ERROR_REASON)


def test_only_the_configured_tasks_are_verified():
    config = VerifyConfig(enabled=True, model="m", tasks=["reasoning"])
    record = camera()
    reject, kept = judge(record, Generation("1. CONTRADICTED: no", 1, 1), config, "v")
    assert (reject.reason, reject.task) == (CONTRADICTED_REASON, "reasoning")  # answer 1 is the reasoning answer
    assert [c.task for c in kept.conversations] == ["conversation"]
    assert list(judge(record, Generation("1. SUPPORTED", 1, 1), config, "v")) == [record]


def test_random_text_is_no_verdict_and_rejects_by_default():
    config = VerifyConfig(enabled=True, model="m")
    out = list(judge(coffee(), Generation("zq!! lorem the of", 1, 1), config, "v"))
    reject, image_reject = out
    assert (reject.reason, reject.task) == (NO_VERDICT_REASON, "conversation") and "zq!!" in reject.detail
    assert image_reject.reason == "no_valid_conversation"


def write_and_verify(records, config, output: Path):
    with TestPipeline() as p:
        out, rejects = p | beam.Create(records) | Verify(config)
        inputs = p | "Inputs" >> beam.Create([len(records)])
        {"records": out, "rejects": rejects, "inputs": inputs} | WriteOutputs(
            str(output), WriteConfig(), {"run_id": "test", "recipe_hash": "x", "preset": None, "started_at": 0.0})
        assert_that(rejects | beam.Map(lambda r: (r.source_member, r.reason)), functools.partial(_collect, "rejects"))
    report = verify_run(str(output))
    assert report.ok, report.problems
    return sorted(_collected["rejects"])


def test_through_an_openai_compatible_endpoint_with_faults(tmp_path, monkeypatch):
    monkeypatch.setenv("LF_VERIFY_KEY", KEY)
    scripts = {"helicopter": [("500",), ("ok", REPLIES["camera"])], "dog": [("429", 0), ("ok", REPLIES["coffee"])]}
    with ImageFaultServer(scripts) as server:
        config = VerifyConfig(enabled=True, model="served-vlm", backend="openai", max_image_side=128,
                              openai={"base_url": server.base_url, "api_key_env": "LF_VERIFY_KEY", "max_retries": 2,
                                      "backoff_base_s": 0.01, "backoff_max_s": 0.05, "timeout_s": 5})
        rejects = write_and_verify([camera(), coffee()], config, tmp_path / "out")
    assert rejects == [("camera.jpg", CONTRADICTED_REASON), ("coffee.jpg", "no_valid_conversation"),
                       ("coffee.jpg", CONTRADICTED_REASON)]
    assert server.calls == {"helicopter": 2, "dog": 2} and set(server.authorizations) == {f"Bearer {KEY}"}
    assert len(server.images()) == 4 and all(mime == "image/jpeg" for mime, _ in server.images())
    for path in (tmp_path / "out").rglob("*"):
        if path.is_file():
            assert KEY.encode() not in path.read_bytes(), path


@pytest.mark.parametrize("field, value, message", [
    ("prompt_file", "/nonexistent/verify.yaml", "verify.prompt_file"),
])
def test_a_bad_prompt_file_is_a_recipe_error(field, value, message):
    from llavaforge.config.recipe import RecipeError

    with pytest.raises(RecipeError, match=message.replace(".", r"\.")):
        load_recipe(None, {"preset": "tiny", "verify.enabled": True, f"verify.{field}": value})
