"""Dedup: one record per distinct image across the whole run.

Exact duplicates share a sha256. Which copy is kept does not depend on arrival order: the
one with the smallest (shard URL, member name) wins; the others become rejects with reason
`duplicate` and a pointer to the kept copy.
"""

from __future__ import annotations

from typing import Iterable, Iterator, Union

import apache_beam as beam
from apache_beam.metrics import Metrics

from llavaforge.schemas.record import DUPLICATE_REASON, ImageRecord, Reject
from llavaforge.transforms.base import REJECTS

STAGE = "dedup"


def choose_kept(records: Iterable[ImageRecord]) -> tuple[ImageRecord, list[ImageRecord]]:
    ordered = sorted(records, key=lambda r: r.source.sort_key)
    return ordered[0], ordered[1:]


def duplicate_reject(record: ImageRecord, kept: ImageRecord, reason: str = DUPLICATE_REASON,
                     detail: str = "") -> Reject:
    pointer = f"duplicate of {kept.key} ({kept.source.url} :: {kept.source.member})"
    return Reject.of(record.key, record.source, STAGE, reason, f"{pointer}{detail}")


class _KeepFirstFn(beam.DoFn):
    def __init__(self) -> None:
        super().__init__()
        self._duplicates = Metrics.counter(STAGE, "duplicates")

    def process(self, element: tuple[str, Iterable[ImageRecord]]) -> Iterator[Union[ImageRecord, beam.pvalue.TaggedOutput]]:
        _, group = element
        kept, dropped = choose_kept(group)
        yield kept
        for record in dropped:
            self._duplicates.inc()
            yield beam.pvalue.TaggedOutput(REJECTS, duplicate_reject(record, kept))


class ExactDedup(beam.PTransform):
    """ImageRecords -> (distinct records, duplicate rejects), grouped by sha256."""

    def expand(self, records):
        outputs = (
            records
            | "BySha256" >> beam.Map(lambda r: (r.image.sha256, r))
            | "GroupSameBytes" >> beam.GroupByKey()
            | "KeepFirst" >> beam.ParDo(_KeepFirstFn()).with_outputs(REJECTS, main="records")
        )
        return outputs.records, outputs[REJECTS]
