"""The whole pipeline on several SDK worker processes (portable job service, DirectRunner
multi-processing) writes the same keys and counts as the in-process run."""

from __future__ import annotations

import getpass
import json
import os
import threading
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from llavaforge.config.recipe import Recipe
from llavaforge.jobs.run import run
from llavaforge.jobs.verify import verify
from llavaforge.runners.portable import WORKER_SCRIPT, job_service, portable_args
from tests.conftest import published_dir

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
INPUTS = [str(EXAMPLES / "sample-000.tar"), str(EXAMPLES / "sample-001.parquet")]
COUNTS = ("inputs", "images_written", "samples_written", "images_rejected", "duplicates", "sample_rejects",
          "rejects", "balanced")


def recipe() -> Recipe:
    return Recipe(preset="tiny")


def outcome(output: str) -> tuple[dict, set[str], list[tuple]]:
    assert verify(output).ok, verify(output).problems
    run_dir = published_dir(output)
    stats = json.loads((run_dir / "stats.json").read_text())
    keys = {k for p in (run_dir / "samples").glob("*.parquet") for k in pq.read_table(p, columns=["key"]).column("key").to_pylist()}
    rejects = sorted((r["key"], r["stage"], r["reason"]) for p in (run_dir / "rejects").glob("*.parquet")
                     for r in pq.read_table(p).to_pylist())
    return {k: stats[k] for k in COUNTS}, keys, rejects


class WorkerWatch:
    """Records the pids of SDK worker processes whose parent is `parent` while a run goes on."""

    def __init__(self, parent: int) -> None:
        self.parent = parent
        self.pids: set[int] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        while not self._stop.wait(0.2):
            for entry in Path("/proc").iterdir():
                if not entry.name.isdigit():
                    continue
                try:
                    ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                    command = (entry / "cmdline").read_bytes()
                except (OSError, IndexError, ValueError):
                    continue
                if ppid == self.parent and (b"sdk_worker_main" in command or WORKER_SCRIPT.encode() in command):
                    self.pids.add(int(entry.name))

    def __enter__(self) -> "WorkerWatch":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


@pytest.fixture(scope="module")
def in_process(tmp_path_factory):
    output = str(tmp_path_factory.mktemp("in-process"))
    run(recipe(), INPUTS, output)
    return outcome(output)


def test_portable_args_start_subprocess_workers(tmp_path):
    args = portable_args("localhost:1234", workers=3, python="/opt/py bin/python")
    assert "--job_endpoint=localhost:1234" in args and "--sdk_worker_parallelism=3" in args
    assert "--environment_config='/opt/py bin/python' -m apache_beam.runners.worker.sdk_worker_main" in args
    # With the console script installed the worker command is one word: the flags survive $(...).
    (tmp_path / WORKER_SCRIPT).write_text("#!/bin/sh\n")
    args = portable_args("localhost:1234", python=str(tmp_path / "python"))
    assert f"--environment_config={tmp_path / WORKER_SCRIPT}" in args


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="counts worker processes through /proc")
@pytest.mark.slow
def test_portable_job_service_with_two_workers_matches_in_process(in_process, tmp_path, monkeypatch):
    temporary = tmp_path / "tmp"  # the driver's, the service's and its workers'
    temporary.mkdir()
    monkeypatch.setenv("TMPDIR", str(temporary))
    monkeypatch.setattr("tempfile.tempdir", str(temporary))
    output = str(tmp_path / "portable")
    with job_service(workers=2) as service, WorkerWatch(service.pid) as watch:
        run(recipe(), INPUTS, output, service.flags)
    assert len(watch.pids) >= 2
    assert outcome(output) == in_process
    # Nothing left behind but caches that every run reuses by name: torch's compile cache, one a
    # user, and Beam's cache of downloaded requirements.
    assert {p.name for p in temporary.iterdir()} <= {f"torchinductor_{getpass.getuser()}", "beam-requirements-cache"}


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="counts worker processes through /proc")
@pytest.mark.slow
def test_direct_runner_multi_processing_with_two_workers_matches_in_process(in_process, tmp_path):
    output = str(tmp_path / "multi")
    with WorkerWatch(os.getpid()) as watch:
        run(recipe(), INPUTS, output, ["--direct_running_mode=multi_processing", "--direct_num_workers=2"])
    assert len(watch.pids) >= 2
    assert outcome(output) == in_process

