"""Verify: a vision-language model looks at each image and judges every generated answer about
it; its verdicts become rejects or flags (stage `verify`, after `check`).

All answers of an image go to the verifier in one request (`models/vlm/roles.py`), numbered;
its reply gives one verdict per answer (`prompts/verdict.py`). Per conversation the worst
verdict decides, each with the action the recipe gives it (`verify.contradicted`, `unsure`,
`no_verdict`: reject, flag or ignore):

- `vlm_contradicted`: the image contradicts a claim of an answer;
- `vlm_unsure`: the verifier cannot tell from the image;
- `vlm_no_verdict`: the reply has no readable verdict for an answer (random or off-format output);
- `vlm_error`: the model or endpoint failed for this image (a reject, retryable).

A rejected conversation is a sample reject with the verifier's reason and the answer in its
detail; a flagged one is kept with the reason in `flags`; an image left with no conversation
gets one image-level reject (`no_valid_conversation`). A batch the model raises on is retried
image by image. Images without a conversation to verify pass through untouched.
"""

from __future__ import annotations

import dataclasses
from typing import Iterator, Union

import apache_beam as beam
from apache_beam.ml.inference.base import PredictionResult, RunInference

from llavaforge.config.verify import VerifyConfig
from llavaforge.models.llm.base import Generation
from llavaforge.models.vlm.roles import VerifierHandler, verified_answers
from llavaforge.prompts.verdict import CONTRADICTED, UNSURE, parse_verdicts
from llavaforge.schemas.record import Conversation, ImageRecord, Reject
from llavaforge.transforms.base import RetryEachItemFn, StageFn, apply_stage_fn
from llavaforge.transforms.conversations import keep_conversations

STAGE = "verify"
CONTRADICTED_REASON = "vlm_contradicted"
UNSURE_REASON = "vlm_unsure"
NO_VERDICT_REASON = "vlm_no_verdict"
ERROR_REASON = "vlm_error"
# worst first: the first rejecting reason of a conversation names its reject
REASONS = (CONTRADICTED_REASON, NO_VERDICT_REASON, UNSURE_REASON)
DETAIL_CHARS = 300


def _excerpt(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= DETAIL_CHARS else text[:DETAIL_CHARS] + "…"


def answer_findings(record: ImageRecord, text: str, config: VerifyConfig) -> dict[int, list[tuple[str, str]]]:
    """Conversation index -> (reason, detail) of each of its answers the verdicts fault."""
    pairs = verified_answers(record, config)
    verdicts = parse_verdicts(text, len(pairs))
    findings: dict[int, list[tuple[str, str]]] = {index: [] for index, _, _ in pairs}
    for number, (index, _, answer) in enumerate(pairs, start=1):
        verdict = verdicts.get(number)
        if verdict is None:
            findings[index].append((NO_VERDICT_REASON, f"answer {number}: no verdict in the verifier's reply "
                                                       f"{_excerpt(text)!r}"))
        elif verdict.label in (CONTRADICTED, UNSURE):
            reason = CONTRADICTED_REASON if verdict.label == CONTRADICTED else UNSURE_REASON
            findings[index].append((reason, f"answer {number}: {verdict.reason or verdict.label} "
                                            f"(answer: {_excerpt(answer)!r})"))
    return findings


def judge(record: ImageRecord, generation: Generation, config: VerifyConfig,
          prompt_version: str) -> Iterator[Union[ImageRecord, Reject]]:
    """The record with the conversations its verdicts keep (flags added), and the rejects."""
    actions = {CONTRADICTED_REASON: config.contradicted, UNSURE_REASON: config.unsure,
               NO_VERDICT_REASON: config.no_verdict}
    if generation.error:
        verified = {index for index, _, _ in verified_answers(record, config)}
        failed = [c for i, c in enumerate(record.conversations) if i in verified]
        rejects = [Reject.of(record.key, record.source, STAGE, ERROR_REASON, generation.error, task=c.task,
                             retryable=True) for c in failed]
        kept = [c for i, c in enumerate(record.conversations) if i not in verified]
        record = record.replace(retryable_failures=record.retryable_failures + len(rejects))
        yield from keep_conversations(record, kept, rejects, STAGE)
        return
    findings = answer_findings(record, generation.text, config)
    kept: list[Conversation] = []
    rejects: list[Reject] = []
    for index, conversation in enumerate(record.conversations):
        found = findings.get(index, [])
        rejecting = [(r, d) for r, d in found if actions[r] == "reject"]
        if rejecting:
            reason = min(rejecting, key=lambda f: REASONS.index(f[0]))[0]
            detail = "; ".join(d for r, d in found) + f" [{prompt_version}]"
            rejects.append(Reject.of(record.key, record.source, STAGE, reason, detail, task=conversation.task))
            continue
        flags = [r for r in dict.fromkeys(r for r, _ in found) if actions[r] == "flag" and r not in conversation.flags]
        kept.append(dataclasses.replace(conversation, flags=conversation.flags + flags) if flags else conversation)
    yield from keep_conversations(record, kept, rejects, STAGE)


class _RetryEachImageFn(RetryEachItemFn):
    """A batch the verifier raised on, image by image: an image that breaks it gets an errored
    generation (its conversations become `vlm_error` rejects), the others their verdicts."""

    stage = STAGE

    def failed(self, record: ImageRecord, error: Exception) -> PredictionResult:
        return PredictionResult(record, Generation("", 0, 0, error=f"{type(error).__name__}: {error}"))


class _JudgeFn(StageFn):
    stage = STAGE

    def __init__(self, config: VerifyConfig, prompt_version: str) -> None:
        super().__init__()
        self._config = config
        self._prompt_version = prompt_version

    def process_element(self, result: PredictionResult) -> Iterator[Union[ImageRecord, Reject]]:
        yield from judge(result.example, result.inference, self._config, self._prompt_version)


class Verify(beam.PTransform):
    """ImageRecords -> (records whose conversations the verifier kept, rejects)."""

    def __init__(self, config: VerifyConfig) -> None:
        super().__init__()
        self._config = config
        self._handler = VerifierHandler(config)  # loads and checks the prompt file now, not on a worker

    def expand(self, records):
        config = self._config
        to_verify, untouched = records | "HasAnswers" >> beam.Partition(
            lambda record, _: 0 if verified_answers(record, config) else 1, 2)
        results, failures = to_verify | "Verifier" >> RunInference(self._handler).with_exception_handling()
        retried, retry_rejects = apply_stage_fn(failures.failed_inferences, _RetryEachImageFn(self._handler),
                                                "RetryEachImage")
        judged, rejects = apply_stage_fn((results, retried) | "AllVerdicts" >> beam.Flatten(),
                                         _JudgeFn(config, self._handler.prompt_version), "Judge")
        return ((judged, untouched) | "Merge" >> beam.Flatten(),
                (retry_rejects, rejects) | "VerifyRejects" >> beam.Flatten())
