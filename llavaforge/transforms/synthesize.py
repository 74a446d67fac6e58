"""Synthesize: an LLM writes LLaVA conversations about each image from its annotations.

Per image: pick the task types (task mix), render the image's description (context), build
one chat request per task from the prompt library, generate them all with RunInference on
the configured backend, parse each output into turns, and put the conversations back on
the record. Every task that fails becomes a reject with its task set (`unparseable`,
`copied_example`, `llm_error`); an image left with no conversation also gets one image-level reject
(`no_conversation`, or `no_context` when there was nothing to describe) and is not passed on.
"""

from __future__ import annotations

from typing import Any, Iterable, Iterator, NamedTuple, Optional

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.ml.inference.base import PredictionResult, RunInference

from llavaforge.models.llm.backends import make_llm_handler
from llavaforge.models.llm.base import Generation, LlmHandler, LlmRequest
from llavaforge.config.synthesize import SynthesizeConfig
from llavaforge.prompts.context import render_context
from llavaforge.prompts.library import PromptLibrary, PromptError, load_library
from llavaforge.prompts.mix import choose_tasks, pick_instruction, request_seed
from llavaforge.prompts.parse import parse_output
from llavaforge.schemas.record import Conversation, ImageRecord, Reject, Source
from llavaforge.transforms.base import REJECTS, StageFn, apply_stage_fn

STAGE = "synthesize"
REQUESTS = "requests"


class SynthesisTag(NamedTuple):
    """What a request carries through the LLM to be turned back into a conversation."""

    key: str
    source_url: str
    source_member: str
    task: str
    prompt_version: str
    format: str
    instruction: Optional[str]
    seed: int

    @property
    def source(self) -> Source:
        return Source(url=self.source_url, member=self.source_member)


def plan_requests(record: ImageRecord, config: SynthesizeConfig, library: PromptLibrary,
                  seed: int) -> list[LlmRequest]:
    """The LLM requests of one image (none when it has nothing to describe)."""
    context = render_context(record, config.context_max_tokens)
    if not context:
        return []
    requests = []
    for name in choose_tasks(seed, record.key, config.tasks, config.task_mix, config.task_weights,
                             config.tasks_per_image):
        task = library.task(name)
        instructions = task.spec.instructions
        instruction = pick_instruction(seed, record.key, name, instructions) if instructions else None
        tag = SynthesisTag(record.key, record.source.url, record.source.member, name, task.prompt_version,
                           task.spec.format, instruction, request_seed(seed, record.key, name))
        messages = task.messages(context, config.few_shot_examples)
        requests.append(LlmRequest(messages=tuple(messages), seed=tag.seed,
                                   shared_prefix=len(messages) - 1, tag=tag))
    return requests


class _PlanFn(StageFn):
    stage = STAGE

    def __init__(self, config: SynthesizeConfig, library: PromptLibrary, seed: int) -> None:
        super().__init__()
        self.config, self.library, self.seed = config, library, seed

    def process_element(self, record: ImageRecord) -> Iterable[Any]:
        requests = plan_requests(record, self.config, self.library, self.seed)
        if not requests:
            context = render_context(record, self.config.context_max_tokens)
            reason, detail = ("no_context", "no annotations or source text to describe") if not context else (
                "no_task", "the task mix chose no task (all weights 0)")
            yield Reject.of(record.key, record.source, STAGE, reason, detail)
            return
        yield (record.key, record)
        for request in requests:
            yield beam.pvalue.TaggedOutput(REQUESTS, request)


def outcome(result: PredictionResult, config: SynthesizeConfig,
            library: PromptLibrary) -> tuple[str, Conversation | Reject]:
    """(key, the conversation or the task's reject) from one LLM result."""
    tag: SynthesisTag = result.example.tag
    generation = result.inference
    if generation.error:
        return tag.key, Reject.of(tag.key, tag.source, STAGE, "llm_error", generation.error, task=tag.task,
                                  retryable=True)
    parsed = parse_output(generation.text, tag.format, tag.instruction)
    if parsed.error:
        detail = f"{parsed.error}; output: {generation.text[: config.max_raw_chars]}"
        return tag.key, Reject.of(tag.key, tag.source, STAGE, "unparseable", detail, task=tag.task)
    answers = " ".join(t.value for t in parsed.turns[1::2])
    if library.task(tag.task).copies_an_example(answers):
        detail = f"repeats a few-shot example; output: {generation.text[: config.max_raw_chars]}"
        return tag.key, Reject.of(tag.key, tag.source, STAGE, "copied_example", detail, task=tag.task)
    return tag.key, Conversation(task=tag.task, turns=parsed.turns, backend=config.backend, model=config.model or "",
                                 prompt_version=tag.prompt_version, tokens_in=generation.tokens_in,
                                 tokens_out=generation.tokens_out, seed=tag.seed)


def failed_generation(request: LlmRequest, error: Exception) -> PredictionResult:
    """The result of a request the backend raised on: an `llm_error` for that request only."""
    return PredictionResult(request, Generation(text="", tokens_in=0, tokens_out=0,
                                                error=f"{type(error).__name__}: {error}"))


class _RetryEachRequestFn(StageFn):
    """A batch the LLM backend raised on (a prompt too long, out of memory), request by request:
    the requests that work are generated, the one that breaks the backend becomes its sample's
    `llm_error` reject, the rest of the batch is kept."""

    stage = STAGE
    progress_label = "llm"

    def __init__(self, handler: LlmHandler) -> None:
        super().__init__()
        self._handler = handler
        self._model = None

    def setup(self) -> None:
        self._model = self._handler.load_model()  # the process-wide copy RunInference already loaded

    def process_element(self, failed: tuple) -> Iterator[PredictionResult]:
        for request in failed[0]:
            try:
                (result,) = self._handler.run_inference([request], self._model)
            except Exception as e:  # noqa: BLE001 -- this request is the one that breaks the backend
                result = failed_generation(request, e)
            yield result


class _ParseFn(StageFn):
    stage = STAGE
    progress_label = "llm"

    def __init__(self, config: SynthesizeConfig, library: PromptLibrary) -> None:
        super().__init__()
        self.config = config
        self.library = library
        self._tokens_in = Metrics.counter(STAGE, "tokens_in")
        self._tokens_out = Metrics.counter(STAGE, "tokens_out")

    def process_element(self, result: PredictionResult) -> Iterator[tuple[str, Any]]:
        self._tokens_in.inc(result.inference.tokens_in)
        self._tokens_out.inc(result.inference.tokens_out)
        yield outcome(result, self.config, self.library)

    def element_rejects(self, result: PredictionResult, error: Exception) -> list[Any]:
        # The task's reject goes on to assembly with the image's other tasks.
        tag: SynthesisTag = result.example.tag
        return [(tag.key, Reject.of(tag.key, tag.source, STAGE, "error", f"{type(error).__name__}: {error}",
                                    task=tag.task, retryable=True))]


class _AssembleFn(StageFn):
    """Puts an image's conversations on its record, in task order; rejects the rest."""

    stage = STAGE
    progress_label = "synthesize_assemble"

    def __init__(self, tasks: list[str]) -> None:
        super().__init__()
        self.order = {t: i for i, t in enumerate(tasks)}

    def process_element(self, element: tuple[str, dict[str, list]]) -> Iterator[Any]:
        _, joined = element
        (record,) = joined["record"]
        outcomes = sorted(joined["outcomes"], key=lambda o: self.order.get(o.task, len(self.order)))
        conversations = [o for o in outcomes if isinstance(o, Conversation)]
        task_rejects = [o for o in outcomes if isinstance(o, Reject)]
        yield from task_rejects
        retryable = sum(r.retryable for r in task_rejects)
        if conversations:
            yield record.replace(conversations=list(record.conversations) + conversations,
                                 retryable_failures=record.retryable_failures + retryable)
        else:
            detail = "; ".join(f"{r.task}: {r.reason}" for r in task_rejects)
            yield Reject.of(record.key, record.source, STAGE, "no_conversation", detail, retryable=retryable > 0)


class Synthesize(beam.PTransform):
    """ImageRecords -> (records with conversations, rejects)."""

    def __init__(self, config: SynthesizeConfig, seed: int = 0, library: Optional[PromptLibrary] = None) -> None:
        super().__init__()
        self.config = config
        self.seed = seed
        self.library = library or load_library(config.prompts_dir)
        for name in config.tasks:
            self.library.task(name)  # fail at build time, not on a worker

    def expand(self, records):
        planned = records | "Plan" >> beam.ParDo(_PlanFn(self.config, self.library, self.seed)).with_outputs(
            REQUESTS, REJECTS, main="records")
        handler = make_llm_handler(self.config, self.seed)
        generated, failures = planned[REQUESTS] | "Generate" >> RunInference(handler).with_exception_handling()
        retried, retry_rejects = apply_stage_fn(failures.failed_inferences, _RetryEachRequestFn(handler),
                                                "RetryEachRequest")
        outcomes, parse_rejects = apply_stage_fn((generated, retried) | "AllGenerated" >> beam.Flatten(),
                                                 _ParseFn(self.config, self.library), "Parse")
        joined = {"record": planned.records, "outcomes": outcomes} | "JoinByKey" >> beam.CoGroupByKey()
        assembled, assemble_rejects = apply_stage_fn(joined, _AssembleFn(self.config.tasks), "Assemble")
        rejects = ((planned[REJECTS], retry_rejects, parse_rejects, assemble_rejects)
                   | "SynthesizeRejects" >> beam.Flatten())
        return assembled, rejects

