"""The key index of a nightly run: the image keys it published, one small Parquet file.

Written by the publication step, read by later runs' published-images filter and by
`llavaforge status` (keys published twice)."""

from __future__ import annotations

from typing import Iterable, Iterator

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

KEY_INDEX_SCHEMA = pa.schema([("key", pa.string()), ("run_id", pa.string())])


def write_key_index(keys: Iterable[str], run_id: str, url: str) -> int:
    """Write one run's published keys, sorted; returns the count."""
    ordered = sorted(set(keys))
    table = pa.table({"key": ordered, "run_id": [run_id] * len(ordered)}, schema=KEY_INDEX_SCHEMA)
    with fsspec.open(url, "wb") as f:
        pq.write_table(table, f)
    return len(ordered)


def read_key_index(url: str) -> Iterator[tuple[str, str]]:
    """(key, run id) pairs of one key index file."""
    with fsspec.open(url, "rb") as f:
        table = pq.read_table(f, columns=["key", "run_id"])
    yield from zip(table.column("key").to_pylist(), table.column("run_id").to_pylist())
