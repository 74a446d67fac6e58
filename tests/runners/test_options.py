"""Threads per local worker process; refused experiments."""

from __future__ import annotations

import os

import pytest

from llavaforge.runners.options import RunnerOptionError, cores_shared_between, local_workers, pipeline_options


@pytest.mark.parametrize("args, workers", [
    ([], 1),
    (["--direct_running_mode=multi_processing", "--direct_num_workers=2"], 2),
    (["--direct_running_mode=in_memory", "--direct_num_workers=4"], 1),
])
def test_local_workers_are_the_multi_processing_worker_count(args, workers):
    assert local_workers(pipeline_options(args)) == workers


def test_workers_get_their_share_of_the_cores_while_they_start(monkeypatch):
    monkeypatch.setattr(os, "environ", {})
    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    with cores_shared_between(1):
        assert "OMP_NUM_THREADS" not in os.environ
    with cores_shared_between(2):
        assert os.environ["OMP_NUM_THREADS"] == "4"
    assert "OMP_NUM_THREADS" not in os.environ  # the driver's own environment is left as it was
    with cores_shared_between(16):
        assert os.environ["OMP_NUM_THREADS"] == "1"


def test_a_thread_count_the_user_set_is_kept(monkeypatch):
    monkeypatch.setattr(os, "environ", {"OMP_NUM_THREADS": "3"})
    with cores_shared_between(2):
        assert os.environ["OMP_NUM_THREADS"] == "3"
    assert os.environ["OMP_NUM_THREADS"] == "3"


@pytest.mark.parametrize("runner", ["DirectRunner", "DataflowRunner"])
def test_a_timed_flush_in_the_sdk_workers_is_refused_on_every_runner(runner):
    with pytest.raises(RunnerOptionError, match="data_buffer_time_limit_ms=1000"):
        pipeline_options([f"--runner={runner}", "--experiments=data_buffer_time_limit_ms=1000"])
    pipeline_options([f"--runner={runner}", "--experiments=data_buffer_time_limit_ms=0"])
    pipeline_options([f"--runner={runner}", "--experiments=use_runner_v2"])
