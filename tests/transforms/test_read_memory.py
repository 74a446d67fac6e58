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


GIB = 1024 ** 3
_READ_AND_MEASURE = """
import json, resource, sys
from llavaforge.config.sections import ReadConfig
from llavaforge.transforms.read import read_shard
outputs = [(type(o).__name__, getattr(o, "reason", None), o.source.member if hasattr(o, "source") else o.source_member)
           for o in read_shard(sys.argv[1], ReadConfig())]
print(json.dumps({"outputs": outputs, "peak_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""


def gzip_tar_with_a_huge_member(path, huge_bytes: int, after: bytes) -> str:
    """A .tar.gz whose first member is `huge_bytes` of zeros (a few MB on disk), then a small JPEG."""
    import gzip
    import tarfile

    with gzip.open(path, "wb", compresslevel=1) as out:
        info = tarfile.TarInfo("huge.png")
        info.size = huge_bytes
        out.write(info.tobuf(format=tarfile.GNU_FORMAT))
        chunk = bytes(16 * 1024 * 1024)
        for _ in range(huge_bytes // len(chunk)):
            out.write(chunk)
        small = tarfile.TarInfo("after.jpg")
        small.size = len(after)
        out.write(small.tobuf(format=tarfile.GNU_FORMAT) + after + bytes(-len(after) % 512) + bytes(1024))
    return str(path)


def read_in_child(url: str) -> dict:
    import json
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", _READ_AND_MEASURE, url], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_a_2_gib_gzip_member_is_rejected_in_flat_memory(tmp_path):
    from tests.conftest import image_bytes

    after = image_bytes(seed=1)
    huge = read_in_child(gzip_tar_with_a_huge_member(tmp_path / "bomb.tar.gz", 2 * GIB, after))
    small = read_in_child(gzip_tar_with_a_huge_member(tmp_path / "small.tar.gz", 16 * 1024 * 1024, after))
    assert (tmp_path / "bomb.tar.gz").stat().st_size < 20 * 1024 * 1024
    assert huge["outputs"] == [["Reject", "member_too_large", "huge.png"], ["RawSample", None, "after.jpg"]]
    # Peak memory of the 2 GiB read is that of a 16 MiB one: the member is skipped, never held.
    assert huge["peak_kb"] - small["peak_kb"] < 64 * 1024, (huge["peak_kb"], small["peak_kb"])
