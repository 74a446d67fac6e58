"""DropPublished: an image published by an earlier nightly run is counted as a duplicate
instead of being written again (the earlier runs' key indexes say which).

The filter is a join (CoGroupByKey on the image key), not an in-memory side input, so the
history of published keys can grow past what one worker holds.
"""

from __future__ import annotations

from typing import Iterable, Iterator, Union

import apache_beam as beam

from llavaforge.crashpoint import stall_at
from llavaforge.schemas.key_index import read_key_index
from llavaforge.schemas.record import DUPLICATE_REASON, ImageRecord, Reject
from llavaforge.transforms.base import StageFn, join_by_key

STAGE = "published"


class _DropPublishedFn(StageFn):
    stage = STAGE

    def process_element(self, element: tuple[str, dict[str, Iterable]]) -> Iterator[Union[ImageRecord, Reject]]:
        _, joined = element
        runs = sorted(set(joined["published"]))
        for record in joined["records"]:
            stall_at("publish-filter")
            if runs:
                yield Reject.of(record.key, record.source, STAGE, DUPLICATE_REASON,
                                f"already published in run {runs[0]}")
            else:
                yield record


class DropPublished(beam.PTransform):
    """ImageRecords -> (records not published before, duplicate rejects naming the earlier run).

    `index_files` are key index files written by `write_key_index` (may be empty)."""

    def __init__(self, index_files: list[str]) -> None:
        super().__init__()
        self.index_files = list(index_files)

    def expand(self, records):
        published = (
            records.pipeline
            | "KeyIndexFiles" >> beam.Create(self.index_files)
            | "SpreadIndexFiles" >> beam.Reshuffle()
            | "ReadKeyIndex" >> beam.FlatMap(read_key_index)
        )
        return join_by_key(records, "published", published, _DropPublishedFn(), "DropPublished")
