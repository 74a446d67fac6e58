"""Shared by the stages that drop some of an image's conversations (checks, question dedup)."""

from __future__ import annotations

from typing import Iterator, Union

from llavaforge.schemas.record import Conversation, ImageRecord, Reject

NO_VALID_CONVERSATION = "no_valid_conversation"


def keep_conversations(record: ImageRecord, kept: list[Conversation], rejects: list[Reject],
                       stage: str) -> Iterator[Union[ImageRecord, Reject]]:
    """The record with only `kept` conversations, and the sample rejects; an image left with
    none (that had some) is not passed on and gets one image-level reject besides, so the
    run's accounting counts it once."""
    yield from rejects
    if not record.conversations:
        yield record
        return
    if kept:
        yield record.replace(conversations=kept)
        return
    reasons = sorted({r.reason for r in rejects})
    yield Reject.of(record.key, record.source, stage, NO_VALID_CONVERSATION,
                    f"all {len(record.conversations)} conversations rejected: {', '.join(reasons)}",
                    retryable=record.retryable_failures > 0)
