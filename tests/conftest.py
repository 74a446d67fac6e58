"""Builders for the small test inputs: images in every mode, tar/parquet/folder shards; a script
run in a fresh Python process."""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Iterable, Iterator, Optional

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from llavaforge.config.recipe import Recipe
from llavaforge.schemas.record import Annotations, ImageInfo, ImageRecord, Source

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@contextlib.contextmanager
def own_temporary_folder(env: Optional[dict] = None) -> Iterator[dict]:
    """`env` (default: this process's) with TMPDIR set to a fresh folder that is removed when the
    block ends. For a child process whose temporary folders nothing else removes: plain Beam's in
    the baselines tests compare with, and a run's after kill -9."""
    folder = tempfile.mkdtemp(prefix="llavaforge-test-")
    try:
        yield {**(os.environ if env is None else env), "TMPDIR": folder}
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def run_python(script: str, *args: str, timeout: float, env: Optional[dict] = None) -> subprocess.CompletedProcess:
    """`python -c script args` in a fresh process (a patch of Beam stays in it) with a temporary
    folder of its own; fails the test with the script's stderr unless it exits 0."""
    with own_temporary_folder(env) as child_env:
        done = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, env=child_env,
                              timeout=timeout)
    assert done.returncode == 0, done.stderr[-2000:]
    return done


def image_bytes(width: int = 64, height: int = 48, fmt: str = "JPEG", mode: str = "RGB",
                seed: int = 0, **save) -> bytes:
    """A deterministic noisy image (noise keeps distinct seeds distinct after JPEG)."""
    rng = np.random.default_rng(seed)
    rgb = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    image = Image.fromarray(rgb, "RGB")
    if mode != "RGB":
        image = image.convert(mode)
    out = io.BytesIO()
    image.save(out, format=fmt, **save)
    return out.getvalue()


def tar_bytes(members: Iterable[tuple[str, bytes]]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def write_tar(path: Path, members: Iterable[tuple[str, bytes]]) -> str:
    path.write_bytes(tar_bytes(members))
    return str(path)


def write_parquet(path: Path, rows: list[dict], row_group_size: Optional[int] = None) -> str:
    pq.write_table(pa.Table.from_pylist(rows), path, row_group_size=row_group_size)
    return str(path)


def make_record(key: str = "0" * 32, seed: int = 0, member: str = "a.jpg", url: str = "shard.tar",
                annotations: Optional[Annotations] = None) -> ImageRecord:
    data = image_bytes(seed=seed)
    return ImageRecord(key=key, source=Source(url=url, member=member),
                       image=ImageInfo(data=data, format="jpg", width=64, height=48,
                                       sha256=hashlib.sha256(data).hexdigest(), phash="0" * 16,
                                       source_sha256=key * 2),
                       annotations=annotations or Annotations())


@pytest.fixture
def recipe() -> Recipe:
    return Recipe()


def published_dir(prefix) -> Path:
    """The run folder a local `run` output prefix publishes now."""
    from llavaforge.jobs.ledger import published_run_dir

    return Path(published_run_dir(str(prefix)))
