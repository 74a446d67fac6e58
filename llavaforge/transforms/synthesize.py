"""Synthesize: an LLM writes LLaVA conversations about each image from its annotations.

Per image: pick the task types (task mix), render the image's description (context), build
one chat request per task from the prompt library, generate them all with RunInference on
the configured backend, parse each output into turns, and put the conversations back on
the record. A task in `vlm` mode (`synthesize.task_modes`) is written by the vision-language
model `synthesize.vlm` from its prompt file's `vision` block with the image in the request
(`models/vlm/`); its output goes through the same parser and checks. Every task that fails
becomes a reject with its task set (`unparseable`, `copied_example`, `llm_error`, `no_context`
for an llm-mode task of an image that has only vlm-mode tasks to write); an image left with no
conversation also gets one image-level reject (`no_conversation`, or `no_context` when there
was nothing to describe) and is not passed on.
"""

from __future__ import annotations

from typing import Any, Iterable, Iterator, NamedTuple, Optional, Union

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.ml.inference.base import ModelHandler, PredictionResult, RunInference

from llavaforge.models.llm.backends import make_llm_handler
from llavaforge.models.llm.base import Generation, LlmRequest
from llavaforge.models.vlm.base import VlmRequest
from llavaforge.models.vlm.handler import VlmHandler
from llavaforge.config.synthesize import SynthesizeConfig
from llavaforge.prompts.context import render_context
from llavaforge.prompts.library import PromptLibrary, PromptError, load_library
from llavaforge.prompts.mix import choose_tasks, pick_instruction, request_seed
from llavaforge.prompts.parse import parse_output
from llavaforge.schemas.record import Conversation, ImageRecord, Reject, Source
from llavaforge.transforms.base import REJECTS, RetryEachItemFn, StageFn, apply_stage_fn

STAGE = "synthesize"
REQUESTS = "requests"
VISION_REQUESTS = "vision_requests"
VLM_MODE = "vlm"
LLM_MODE = "llm"


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
    mode: str = LLM_MODE  # LLM_MODE: the LLM writes from the annotations; VLM_MODE: the VLM sees the image

    @property
    def source(self) -> Source:
        return Source(url=self.source_url, member=self.source_member)


Request = Union[LlmRequest, VlmRequest]


def chosen_tasks(record: ImageRecord, config: SynthesizeConfig, seed: int) -> list[str]:
    return choose_tasks(seed, record.key, config.tasks, config.task_mix, config.task_weights, config.tasks_per_image)


def plan_requests(record: ImageRecord, config: SynthesizeConfig, library: PromptLibrary,
                  seed: int) -> list[Request]:
    """The requests of one image: an LLM request per chosen task in llm mode when the image has
    something to describe, a VLM request (with the image) per chosen task in vlm mode."""
    context = render_context(record, config.context_max_tokens)
    vision = set(config.vision_tasks)
    requests: list[Request] = []
    for name in chosen_tasks(record, config, seed):
        if name not in vision and not context:
            continue
        task = library.task(name)
        instructions = task.spec.instructions
        instruction = pick_instruction(seed, record.key, name, instructions) if instructions else None
        tag = SynthesisTag(record.key, record.source.url, record.source.member, name, task.prompt_version,
                           task.spec.format, instruction, request_seed(seed, record.key, name),
                           VLM_MODE if name in vision else LLM_MODE)
        if name in vision:
            requests.append(VlmRequest(messages=tuple(task.vision_messages(context)), image=record.image,
                                       seed=tag.seed, tag=tag))
        else:
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
        written = {request.tag.task for request in requests}
        for name in chosen_tasks(record, self.config, self.seed):
            if name not in written:  # an llm-mode task of an image with nothing to describe
                yield Reject.of(record.key, record.source, STAGE, "no_context",
                                "no annotations or source text to describe", task=name)
        for request in requests:
            yield beam.pvalue.TaggedOutput(VISION_REQUESTS if isinstance(request, VlmRequest) else REQUESTS, request)


class Generated(NamedTuple):
    """A generation with its request's tag: what parsing needs. The request's prompt (few-shot
    examples and context, several KB) is left behind, so it is not buffered at the shuffle
    that joins outcomes to records."""

    tag: SynthesisTag
    generation: Generation


def generated(result: PredictionResult) -> Generated:
    return Generated(result.example.tag, result.inference)


def outcome(result: Generated, config: SynthesizeConfig,
            library: PromptLibrary) -> tuple[str, Conversation | Reject]:
    """(key, the conversation or the task's reject) from one LLM result."""
    tag, generation = result
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
    backend, model = (config.vlm.backend, config.vlm.model) if tag.mode == VLM_MODE else (config.backend, config.model)
    return tag.key, Conversation(task=tag.task, turns=parsed.turns, backend=backend, model=model or "",
                                 prompt_version=tag.prompt_version, tokens_in=generation.tokens_in,
                                 tokens_out=generation.tokens_out, seed=tag.seed)


def failed_generation(request: Request, error: Exception) -> PredictionResult:
    """The result of a request the backend raised on: an `llm_error` for that request only."""
    return PredictionResult(request, Generation(text="", tokens_in=0, tokens_out=0,
                                                error=f"{type(error).__name__}: {error}"))


class _RetryEachRequestFn(RetryEachItemFn):
    """A batch the LLM backend raised on (a prompt too long, out of memory), request by request:
    the requests that work are generated, the one that breaks the backend becomes its sample's
    `llm_error` reject, the rest of the batch is kept."""

    stage = STAGE
    progress_label = "llm"

    def failed(self, request: LlmRequest, error: Exception) -> PredictionResult:
        return failed_generation(request, error)


class _ParseFn(StageFn):
    stage = STAGE
    progress_label = "llm"

    def __init__(self, config: SynthesizeConfig, library: PromptLibrary) -> None:
        super().__init__()
        self.config = config
        self.library = library
        self._tokens_in = Metrics.counter(STAGE, "tokens_in")
        self._tokens_out = Metrics.counter(STAGE, "tokens_out")

    def process_element(self, result: Generated) -> Iterator[tuple[str, Any]]:
        self._tokens_in.inc(result.generation.tokens_in)
        self._tokens_out.inc(result.generation.tokens_out)
        yield outcome(result, self.config, self.library)

    def element_rejects(self, result: Generated, error: Exception) -> list[Any]:
        # The task's reject goes on to assembly with the image's other tasks.
        tag = result.tag
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
        for name in config.vision_tasks:
            if self.library.task(name).spec.vision is None:
                raise PromptError(f"task {name!r} is in vlm mode but its prompt file has no `vision` block")

    def _generators(self) -> list[tuple[str, str, ModelHandler]]:
        """(label, requests output, handler) of the models this recipe's tasks need."""
        generators: list[tuple[str, str, ModelHandler]] = []
        if self.config.llm_tasks:
            generators.append(("", REQUESTS, make_llm_handler(self.config, self.seed)))
        if self.config.vision_tasks:
            generators.append(("WithImage", VISION_REQUESTS, VlmHandler(self.config.vlm, "synthesize.vlm", "synthesizer")))
        return generators

    def expand(self, records):
        planned = records | "Plan" >> beam.ParDo(_PlanFn(self.config, self.library, self.seed)).with_outputs(
            REQUESTS, VISION_REQUESTS, REJECTS, main="records")
        generations, rejects = [], [planned[REJECTS]]
        for label, output, handler in self._generators():
            results, failures = planned[output] | f"Generate{label}" >> RunInference(handler).with_exception_handling()
            retried, retry_rejects = apply_stage_fn(failures.failed_inferences, _RetryEachRequestFn(handler),
                                                    f"RetryEach{label or 'Request'}")
            generations += [results | f"Generated{label}" >> beam.Map(generated),
                            retried | f"RetriedGenerated{label}" >> beam.Map(generated)]
            rejects.append(retry_rejects)
        outcomes, parse_rejects = apply_stage_fn(generations | "AllGenerated" >> beam.Flatten(),
                                                 _ParseFn(self.config, self.library), "Parse")
        joined = {"record": planned.records, "outcomes": outcomes} | "JoinByKey" >> beam.CoGroupByKey()
        assembled, assemble_rejects = apply_stage_fn(joined, _AssembleFn(self.config.tasks), "Assemble")
        rejects += [parse_rejects, assemble_rejects]
        return assembled, tuple(rejects) | "SynthesizeRejects" >> beam.Flatten()

