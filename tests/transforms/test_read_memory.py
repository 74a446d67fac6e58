"""A shard is streamed: peak memory while reading stays flat as the shard grows 10x."""

import tracemalloc

import numpy as np
import pytest

from llavaforge.config.sections import ReadConfig
from llavaforge.transforms.read import ReadShardFn
from tests.conftest import write_parquet, write_tar

MEMBER_BYTES = 200_000  # incompressible: each member really is this big


def members(n):
    rng = np.random.default_rng(0)
    for i in range(n):
        yield f"{i:05d}.jpg", rng.integers(0, 256, MEMBER_BYTES, dtype=np.uint8).tobytes()


def peak_python_bytes(url, config=ReadConfig()):
    tracemalloc.start()
    count = sum(1 for _ in ReadShardFn(config).read_shard(url))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return count, peak


@pytest.mark.parametrize("kind", ["tar", "folder"])
def test_peak_memory_is_flat_in_shard_size(tmp_path, kind):
    peaks = {}
    for n in (8, 80):
        if kind == "tar":
            url = write_tar(tmp_path / f"{n}.tar", members(n))
        else:
            root = tmp_path / f"folder{n}"
            root.mkdir()
            for name, data in members(n):
                (root / name).write_bytes(data)
            url = str(root)
        count, peaks[n] = peak_python_bytes(url)
        assert count == n
    whole_small_shard = 8 * MEMBER_BYTES
    assert peaks[80] < 1.5 * peaks[8] + MEMBER_BYTES, peaks
    assert peaks[80] < whole_small_shard, peaks  # far below even the small shard read whole


def test_parquet_is_read_in_bounded_batches(tmp_path):
    peaks = {}
    for n in (8, 80):
        url = write_parquet(tmp_path / f"{n}.parquet", [{"image": d} for _, d in members(n)], row_group_size=4)
        count, python_peak = peak_python_bytes(url, ReadConfig(parquet_batch_rows=4))
        assert count == n
        peaks[n] = python_peak
    assert peaks[80] < 1.5 * peaks[8] + 4 * MEMBER_BYTES, peaks
    assert peaks[80] < 80 * MEMBER_BYTES / 4, peaks  # far below the whole shard
