"""HoldForReview: a sample a check flagged (severity `flag`) is kept out of the training
formats and held for review.

Each flagged sample becomes a sample reject of stage `review` (reason: its first flag, detail:
all of them), carrying the image's record with just that conversation, which the writer puts
in `review/` (the samples table's layout, image bytes included) for a person to look at. An
image left without a sample gets one image-level reject, as after the checks. With
`write.flagged: include` this stage does not run and flagged samples go to every format with
their `flags`.
"""

from __future__ import annotations

from typing import Iterator, Union

import apache_beam as beam

from llavaforge.schemas.record import REVIEW_STAGE, ImageRecord, Reject
from llavaforge.transforms.base import StageFn, apply_stage_fn
from llavaforge.transforms.conversations import keep_conversations

STAGE = REVIEW_STAGE


class _HoldFlaggedFn(StageFn):
    stage = STAGE

    def process_element(self, record: ImageRecord) -> Iterator[Union[ImageRecord, Reject]]:
        kept = [c for c in record.conversations if not c.flags]
        held = [Reject.of(record.key, record.source, STAGE, c.flags[0], f"flagged for review: {', '.join(c.flags)}",
                          task=c.task, review=record.replace(conversations=[c]))
                for c in record.conversations if c.flags]
        yield from keep_conversations(record, kept, held, STAGE)


class HoldForReview(beam.PTransform):
    """ImageRecords -> (records with only unflagged conversations, rejects carrying the flagged ones)."""

    def expand(self, records):
        return apply_stage_fn(records, _HoldFlaggedFn(), "HoldFlagged")
