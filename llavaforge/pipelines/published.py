"""Keys already published by earlier runs: a compact per-run key index, and the filter that
counts an image published before as a duplicate instead of writing it again.

The filter is a join (CoGroupByKey on the image key), not an in-memory side input, so the
history of published keys can grow past what one worker holds.
"""

from __future__ import annotations

from typing import Iterable, Iterator, Union

import apache_beam as beam
import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.metrics import Metrics

from llavaforge.pipelines.crashpoint import stall_at
from llavaforge.schemas.record import DUPLICATE_REASON, ImageRecord, Reject
from llavaforge.transforms.base import REJECTS, join_by_key
from llavaforge.transforms.write import join

STAGE = "published"
KEY_INDEX_SCHEMA = pa.schema([("key", pa.string()), ("run_id", pa.string())])


def written_keys(output: str) -> set[str]:
    """The distinct image keys a run wrote (its samples/ tables)."""
    fs, root = fsspec.core.url_to_fs(output)
    keys: set[str] = set()
    for path in fs.glob(join(root, "samples", "*.parquet")):
        with fs.open(path, "rb") as f:
            keys.update(pq.read_table(f, columns=["key"]).column("key").to_pylist())
    return keys


def write_key_index(keys: Iterable[str], run_id: str, path: str) -> int:
    """Write one run's published keys, sorted, as a two-column Parquet file; returns the count."""
    ordered = sorted(set(keys))
    table = pa.table({"key": ordered, "run_id": [run_id] * len(ordered)}, schema=KEY_INDEX_SCHEMA)
    with fsspec.open(path, "wb") as f:
        pq.write_table(table, f)
    return len(ordered)


def read_key_index(path: str) -> Iterator[tuple[str, str]]:
    """(key, run id) pairs of one key index file."""
    with fsspec.open(path, "rb") as f:
        table = pq.read_table(f, columns=["key", "run_id"])
    yield from zip(table.column("key").to_pylist(), table.column("run_id").to_pylist())


class _DropPublishedFn(beam.DoFn):
    def __init__(self) -> None:
        super().__init__()
        self._published = Metrics.counter(STAGE, "duplicates")

    def process(self, element: tuple[str, dict[str, Iterable]]) -> Iterator[Union[ImageRecord, beam.pvalue.TaggedOutput]]:
        _, joined = element
        runs = sorted(set(joined["published"]))
        for record in joined["records"]:
            stall_at("publish-filter")
            if runs:
                self._published.inc()
                yield beam.pvalue.TaggedOutput(REJECTS, Reject.of(
                    record.key, record.source, STAGE, DUPLICATE_REASON,
                    f"already published in run {runs[0]}"))
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
