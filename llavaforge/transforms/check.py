"""Check: every generated conversation against LLaVA structure, refusal and leakage phrases,
and what the vision models saw (objects, counts, OCR); see `llavaforge.quality`.

A failing check with severity `reject` turns the conversation into a sample reject (stage
`check`, reason = the check, detail = the evidence); severity `flag` keeps it with the
reason in `flags`. Images without conversations (synthesis off) pass through untouched.
"""

from __future__ import annotations

import dataclasses
from typing import Iterable, Optional, Union

import apache_beam as beam

from llavaforge.quality.checker import ConversationChecker
from llavaforge.schemas.record import ImageRecord, Reject
from llavaforge.transforms.base import StageFn, apply_stage_fn
from llavaforge.config.check import CheckConfig
from llavaforge.transforms.conversations import keep_conversations

STAGE = "check"


class _CheckFn(StageFn):
    stage = STAGE

    def __init__(self, config: CheckConfig) -> None:
        super().__init__()
        self._config = config
        self._checker: Optional[ConversationChecker] = None

    def setup(self) -> None:
        self._checker = ConversationChecker(self._config)

    def process_element(self, record: ImageRecord) -> Iterable[Union[ImageRecord, Reject]]:
        if not record.conversations:
            return [record]
        evidence = self._checker.evidence(record.annotations)
        kept, rejects = [], []
        for conversation in record.conversations:
            verdict = self._checker.verdict(conversation, evidence)
            if verdict.rejected is not None:
                rejects.append(Reject.of(record.key, record.source, STAGE, verdict.rejected.reason,
                                         verdict.rejected.detail, task=conversation.task))
            elif verdict.flags:
                kept.append(dataclasses.replace(conversation, flags=conversation.flags + verdict.flags))
            else:
                kept.append(conversation)
        return keep_conversations(record, kept, rejects, STAGE)


def checks_enabled(config: CheckConfig) -> bool:
    """Whether the checks stage has anything to do (the section and at least one check on)."""
    return config.enabled and ConversationChecker(config).any_enabled


class Check(beam.PTransform):
    """ImageRecords -> (records with checked conversations, rejects)."""

    def __init__(self, config: CheckConfig) -> None:
        super().__init__()
        self._config = config

    def expand(self, records):
        return apply_stage_fn(records, _CheckFn(self._config), "CheckConversations")

