import hashlib
import io
import tarfile
from pathlib import Path

import apache_beam as beam
import pytest
from apache_beam.ml.inference.base import PredictionResult
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from llavaforge.models.llm.base import Generation
from llavaforge.prompts.library import load_library
from llavaforge.config.recipe import RecipeError, load_recipe
from llavaforge.config.sections import WriteConfig
from llavaforge.schemas.llava import IMAGE_TOKEN, conversation_errors
from llavaforge.schemas.record import Annotations, Caption, Conversation, DetectedObject, ImageInfo, ImageRecord, \
    OcrText, Source, Tag
from llavaforge.transforms.synthesize import STAGE, Synthesize, generated, outcome, plan_requests
from llavaforge.transforms.write import WriteOutputs
from llavaforge.jobs.verify import verify_run as verify
from tests.conftest import EXAMPLES, make_record
from tests.models.llm.fault_server import FaultServer

KEY = "sk-pipeline-secret-7731"


def described(i: int, caption: str = "A dog runs on a beach.") -> ImageRecord:
    return make_record(key=f"{i:032x}", seed=i, member=f"{i}.jpg", annotations=Annotations(
        captions=[Caption(caption, "blip")], objects=[DetectedObject("dog", 0.9, [0.1, 0.2, 0.5, 0.9], "detr")],
        tags=[Tag("beach", 0.7, "t")], ocr=[OcrText("DOGS WELCOME", 0.9, [0, 0, 1, 0.1], "rapidocr")]))


def config_for(overrides):
    recipe = load_recipe(None, overrides)
    return recipe.synthesize


def run_and_write(records, config, output: Path, check_records, check_rejects, seed: int = 0):
    """records -> Synthesize -> the real writers; the checks get the lists of records and rejects."""
    with TestPipeline() as p:
        out, rejects = p | beam.Create(records) | Synthesize(config, seed=seed)
        inputs = p | "Inputs" >> beam.Create([len(records)])
        {"records": out, "rejects": rejects, "inputs": inputs} | WriteOutputs(
            str(output), WriteConfig(), {"run_id": "test", "recipe_hash": "x", "preset": None, "started_at": 0.0})
        assert_that(out, check_records, label="CheckRecords")
        assert_that(rejects, check_rejects, label="CheckRejects")
    report = verify(str(output))
    assert report.ok, report.problems


def test_plan_is_deterministic_and_carries_the_shared_prefix():
    config = config_for({"preset": "tiny", "synthesize.task_mix": "all"})
    library = load_library()
    requests = plan_requests(described(1), config, library, seed=3)
    assert requests == plan_requests(described(1), config, library, seed=3)
    assert [r.tag.task for r in requests] == ["conversation", "detail", "reasoning"]
    for r in requests:
        assert r.shared_prefix == len(r.messages) - 1 and r.messages[-1]["role"] == "user"
        assert "dog: [0.100, 0.200, 0.500, 0.900]" in r.messages[-1]["content"]
        assert r.tag.prompt_version == library.task(r.tag.task).prompt_version
    detail = requests[1].tag
    assert detail.instruction in library.task("detail").spec.instructions
    assert plan_requests(make_record(), config, library, seed=3) == []


def result_for(text: str, task: str = "reasoning", error: str = ""):
    config = config_for({"preset": "tiny", "synthesize.task_mix": "all"})
    requests = plan_requests(described(1), config, load_library(), seed=0)
    request = next(r for r in requests if r.tag.task == task)
    return outcome(generated(PredictionResult(request, Generation(text, 30, 9, error))), config, load_library()), request


def test_outcome_records_backend_model_version_tokens_and_seed():
    (key, conversation), request = result_for("Question: Why is the dog happy?\n===\nAnswer: It is playing.")
    assert key == f"{1:032x}" and isinstance(conversation, Conversation)
    assert conversation.turns[0].value == f"{IMAGE_TOKEN}\nWhy is the dog happy?"
    assert conversation_errors(conversation) == []
    assert (conversation.backend, conversation.model) == ("hf", "tiny/qwen2")
    assert (conversation.tokens_in, conversation.tokens_out, conversation.seed) == (30, 9, request.tag.seed)
    assert conversation.prompt_version == request.tag.prompt_version and conversation.task == "reasoning"


def test_outcome_rejects_unparseable_copied_and_failed_requests():
    (_, reject), _ = result_for("x" * 5000)
    assert (reject.stage, reject.reason, reject.task) == (STAGE, "unparseable", "reasoning")
    assert "x" * 500 in reject.detail and "x" * 501 not in reject.detail
    (_, copied), _ = result_for("The photo shows a tidy kitchen counter. On the left sits a bowl holding", "detail")
    assert copied.reason == "copied_example" and copied.task == "detail"
    (_, failed), _ = result_for("", error="gave up after 3 attempt(s): HTTP 500")
    assert failed.reason == "llm_error" and "HTTP 500" in failed.detail


def test_tiny_end_to_end_gibberish_becomes_unparseable_rejects_and_balances(tmp_path):
    # `detail` is left out: its output is free text, so gibberish parses (checks judge it later).
    config = config_for({"preset": "tiny", "synthesize.task_mix": "all", "synthesize.max_new_tokens": 8,
                         "synthesize.tasks": ["conversation", "reasoning"]})
    records = [described(i) for i in range(3)] + [make_record(key="f" * 32, seed=9)]

    def check_rejects(rejects):
        per_task = [r for r in rejects if r.task is not None]
        image_level = sorted((r.key, r.reason) for r in rejects if r.task is None)
        assert len(per_task) == 6 and {r.reason for r in per_task} == {"unparseable"}
        assert image_level == [(f"{i:032x}", "no_conversation") for i in range(3)] + [("f" * 32, "no_context")]

    run_and_write(records, config, tmp_path / "out", equal_to([]), check_rejects)


def test_openai_end_to_end_with_faults_keeps_every_record_and_never_writes_the_key(tmp_path, monkeypatch):
    monkeypatch.setenv("LF_PIPELINE_KEY", KEY)
    good = "Question: What animal is it?\nAnswer: A dog.\n===\nQuestion: Where?\nAnswer: On a beach."
    scripts = {"FLAKY": [("429", 0), ("500",), ("ok", good)], "DOWN": [("500",)], "NONSENSE": [("ok", "la la la")]}
    records = [described(1, "FLAKY dog"), described(2, "DOWN dog"), described(3, "NONSENSE dog"), described(4)]
    with FaultServer(scripts) as server:
        config = config_for({"synthesize.tasks": ["conversation"], "synthesize.backend": "openai",
                             "synthesize.model": "served", "synthesize.openai.base_url": server.base_url,
                             "synthesize.openai.api_key_env": "LF_PIPELINE_KEY", "synthesize.openai.max_retries": 2,
                             "synthesize.openai.backoff_base_s": 0.01, "synthesize.openai.backoff_max_s": 0.05})

        def check_records(kept):
            assert sorted(r.key[-1] for r in kept) == ["1", "4"]
            for record in kept:
                (conversation,) = record.conversations
                assert conversation.backend == "openai" and conversation.tokens_out == 7
                assert conversation_errors(conversation) == []

        def check_rejects(rejects):
            reasons = sorted((r.key[-1], r.reason, r.task) for r in rejects)
            assert reasons == [("2", "llm_error", "conversation"), ("2", "no_conversation", None),
                               ("3", "no_conversation", None), ("3", "unparseable", "conversation")]

        run_and_write(records, config, tmp_path / "out", check_records, check_rejects)
    assert server.calls["FLAKY"] == 3 and server.calls["DOWN"] == 3  # bounded: 1 + max_retries
    assert set(server.authorizations) == {f"Bearer {KEY}"}
    for path in (tmp_path / "out").rglob("*"):
        if path.is_file():
            assert KEY.encode() not in path.read_bytes(), path


def sample_images(names):
    with tarfile.open(EXAMPLES / "sample-000.tar") as tar:
        return {n: tar.extractfile(f"{n}.jpg").read() for n in names}


@pytest.mark.slow
def test_offline_smollm2_writes_at_least_one_valid_llava_conversation(tmp_path):
    tags = {"chelsea": ["tabby cat", "Egyptian cat", "tiger cat"], "coffee": ["espresso", "cup", "saucer"],
            "rocket": ["space shuttle", "missile"]}
    records = []
    for i, (name, data) in enumerate(sample_images(tags).items()):
        from PIL import Image

        width, height = Image.open(io.BytesIO(data)).size
        records.append(ImageRecord(
            key=f"{i:032x}", source=Source(url="sample-000.tar", member=f"{name}.jpg"),
            image=ImageInfo(data=data, format="jpg", width=width, height=height,
                            sha256=hashlib.sha256(data).hexdigest(), phash="0" * 16),
            annotations=Annotations(tags=[Tag(t, 0.9 - 0.1 * j, "efficientnet") for j, t in enumerate(tags[name])])))
    config = config_for({"preset": "offline", "synthesize.max_new_tokens": 64})

    def check_records(kept):
        conversations = [c for r in kept for c in r.conversations]
        assert conversations
        for c in conversations:
            assert conversation_errors(c) == [] and c.model == "offline/smollm2-135m-instruct" and c.tokens_out > 0

    def check_rejects(rejects):
        assert all(r.stage == STAGE for r in rejects)

    run_and_write(records, config, tmp_path / "out", check_records, check_rejects)


def test_one_request_that_makes_the_backend_raise_costs_only_its_own_sample(tmp_path, monkeypatch):
    """A batch of 16 where one prompt makes the hf backend raise (too long, out of memory): the
    batch is retried request by request, 15 samples are written, 1 is an `llm_error`."""
    from llavaforge.models.llm.hf import HfGenerator

    def generate(self, requests):
        if any("POISON" in r.messages[-1]["content"] for r in requests):
            raise RuntimeError("CUDA out of memory (simulated)")
        return [Generation(text="Question: What is the dog doing?\nAnswer: The dog is running along the beach.",
                           tokens_in=10, tokens_out=12) for _ in requests]

    monkeypatch.setattr(HfGenerator, "generate", generate)
    config = config_for({"preset": "tiny", "synthesize.tasks": ["conversation"], "synthesize.task_mix": "all",
                         "synthesize.min_batch_size": 16, "synthesize.max_batch_size": 16})
    records = [described(i, caption="A dog runs on a beach. POISON" if i == 7 else "A dog runs on a beach.")
               for i in range(16)]

    def check_records(out):
        assert sorted(r.key for r in out) == sorted(f"{i:032x}" for i in range(16) if i != 7)

    def check_rejects(rejects):
        assert sorted((r.key, r.reason, r.task, r.retryable) for r in rejects) == [
            (f"{7:032x}", "llm_error", "conversation", True), (f"{7:032x}", "no_conversation", None, True)]
        assert "out of memory" in next(r.detail for r in rejects if r.reason == "llm_error")

    run_and_write(records, config, tmp_path / "out", check_records, check_rejects)


# -- vlm mode: a vision-language model writes the task seeing the image -----------------------

VLM_DETAIL = {"preset": "tiny", "synthesize.task_mix": "all", "synthesize.task_modes": {"detail": "vlm"}}


def test_vlm_mode_tasks_are_planned_with_the_image_and_the_vision_prompt():
    from llavaforge.models.vlm.base import VlmRequest

    config = config_for(VLM_DETAIL)
    library = load_library()
    record = described(1)
    requests = {r.tag.task: r for r in plan_requests(record, config, library, seed=3)}
    detail = requests["detail"]
    assert isinstance(detail, VlmRequest) and detail.image == record.image and detail.tag.mode == "vlm"
    assert [m["content"] for m in detail.messages] == [m["content"] for m in library.task("detail").vision_messages("")]
    assert "dog: [0.100" not in str(detail.messages)  # the packaged vision prompts show the image, not the notes
    assert not isinstance(requests["conversation"], VlmRequest) and requests["conversation"].tag.mode == "llm"
    # an image with nothing to describe still gets its vlm-mode task
    assert [r.tag.task for r in plan_requests(make_record(), config, library, seed=3)] == ["detail"]


def test_vlm_mode_writes_with_the_tiny_vlm_and_records_it(tmp_path):
    config = config_for({**VLM_DETAIL, "synthesize.tasks": ["detail", "conversation"]})
    bare = make_record(key="e" * 32, seed=5)  # no annotations: only the vlm-mode task can be written

    def check_records(kept):
        (record,) = kept
        (detail,) = record.conversations
        assert (detail.task, detail.backend, detail.model) == ("detail", "hf", "llavaforge-tiny/smolvlm")
        assert detail.prompt_version == load_library().task("detail").prompt_version and detail.tokens_out == 24
        assert conversation_errors(detail) == []

    def check_rejects(rejects):
        assert sorted((r.reason, r.task) for r in rejects) == [("no_context", "conversation")]

    run_and_write([bare], config, tmp_path / "out", check_records, check_rejects)


def test_synthesis_by_the_vlm_alone_needs_no_llm():
    config = config_for({"synthesize.tasks": ["detail"], "synthesize.task_modes": {"detail": "vlm"},
                         "synthesize.vlm": {"model": "llavaforge-tiny/smolvlm"}})
    assert config.model is None and config.vision_tasks == ["detail"] and config.llm_tasks == []
    stage = Synthesize(config)
    assert [label for label, _, _ in stage._generators()] == ["WithImage"]


def test_a_vlm_mode_task_without_a_vision_prompt_fails_at_build(tmp_path):
    from llavaforge.prompts.library import PromptError

    (tmp_path / "plain.yaml").write_text("task: plain\nversion: 1\nformat: pair\nsystem: s\n")
    config = config_for({"preset": "tiny", "synthesize.tasks": ["plain"], "synthesize.prompts_dir": str(tmp_path),
                         "synthesize.task_modes": {"plain": "vlm"}})
    with pytest.raises(PromptError, match="plain.*no `vision` block"):
        Synthesize(config)
