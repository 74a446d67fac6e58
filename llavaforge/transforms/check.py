"""Check: every generated conversation against LLaVA structure, refusal and leakage phrases,
loops, gibberish, the prompt it was written from, instructions hidden in the image's text,
and what the vision models saw (objects, counts, OCR); see `llavaforge.quality`.

A failing check with severity `reject` turns the conversation into a sample reject (stage
`check`, reason = the check, detail = the evidence); severity `flag` keeps it with the
reason in `flags`. Images without conversations (synthesis off) pass through untouched.
"""

from __future__ import annotations

import dataclasses
from typing import Iterable, Optional, Union

import apache_beam as beam

from llavaforge.prompts.library import load_library
from llavaforge.prompts.scaffolding import prompt_scaffolding
from llavaforge.quality.checker import ConversationChecker
from llavaforge.quality.scaffolding import Scaffolding
from llavaforge.schemas.record import ImageRecord, Reject
from llavaforge.transforms.base import StageFn, apply_stage_fn
from llavaforge.config.check import CheckConfig
from llavaforge.transforms.conversations import keep_conversations

STAGE = "check"


class _CheckFn(StageFn):
    stage = STAGE

    def __init__(self, config: CheckConfig, prompts_dir: Optional[str]) -> None:
        super().__init__()
        self._config = config
        self._prompts_dir = prompts_dir
        self._checker: Optional[ConversationChecker] = None

    def setup(self) -> None:
        scaffolding = (prompt_scaffolding(load_library(self._prompts_dir)) if self._config.prompt_leakage.enabled
                       else Scaffolding())
        self._checker = ConversationChecker(self._config, scaffolding)

    def process_element(self, record: ImageRecord) -> Iterable[Union[ImageRecord, Reject]]:
        if not record.conversations:
            return [record]
        evidence = self._checker.evidence(record.annotations, record.source.texts)
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
    """ImageRecords -> (records with checked conversations, rejects).

    `prompts_dir`: the prompt library the conversations were written from
    (`synthesize.prompts_dir`; None: the packaged one), for the prompt-leakage check."""

    def __init__(self, config: CheckConfig, prompts_dir: Optional[str] = None) -> None:
        super().__init__()
        self._config = config
        self._prompts_dir = prompts_dir

    def expand(self, records):
        return apply_stage_fn(records, _CheckFn(self._config, self._prompts_dir), "CheckConversations")

