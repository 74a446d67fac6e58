"""The job service's SDK workers are forked from its zygote: preloaded, with their share of the
cores, exit codes and output relayed, gone when their launcher is killed, and started the
plain way when no zygote answers."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions

from llavaforge.runners import zygote
from llavaforge.runners.portable import job_service

pytestmark = pytest.mark.skipif(not Path("/proc").is_dir() or not hasattr(os, "fork"),
                                reason="forks, and reads process parents through /proc")

LAUNCHER = [sys.executable, "-c", "from llavaforge.runners.zygote import launch_worker; launch_worker()"]


def children_of(pid: int) -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.add(int(entry.name))
        except (OSError, IndexError, ValueError):
            continue
    return found


def wait_for(condition, timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return False


@pytest.mark.slow
def test_job_service_workers_are_forked_preloaded_with_their_share_of_threads(tmp_path):
    folder = str(tmp_path)

    def describe_worker(element):
        import os
        import sys
        from pathlib import Path

        import torch

        with open(f"/proc/{os.getppid()}/cmdline", "rb") as f:
            parent = f.read().replace(b"\0", b" ").decode()
        Path(folder, f"{element}.json").write_text(json.dumps({
            "pid": os.getpid(), "parent": parent, "threads": torch.get_num_threads(),
            # Nothing this function runs imports it: only the zygote's preload can have.
            "preloaded": "transformers.modeling_utils" in sys.modules}))
        return element

    with job_service(workers=2) as service:
        with beam.Pipeline(options=PipelineOptions(service.flags)) as p:
            _ = p | beam.Create(range(16)) | beam.Reshuffle() | beam.Map(describe_worker)
    workers = [json.loads(f.read_text()) for f in tmp_path.glob("*.json")]
    assert len(workers) == 16
    assert all("llavaforge.runners.zygote" in w["parent"] for w in workers)
    assert all(w["preloaded"] for w in workers)
    assert {w["threads"] for w in workers} == {max(1, (os.cpu_count() or 1) // 2)}


def test_exit_code_and_output_of_a_forked_worker_reach_the_launcher():
    with zygote.running() as forker:
        # No control service named: Beam's worker fails at once, in the forked process.
        env = {**os.environ, zygote.ZYGOTE_ENV: forker.socket}
        env.pop("CONTROL_API_SERVICE_DESCRIPTOR", None)
        done = subprocess.run(LAUNCHER, capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 1
    assert "_run_forked_worker" in done.stderr and "CONTROL_API_SERVICE_DESCRIPTOR" in done.stderr


def test_a_malformed_request_leaves_the_zygote_serving():
    with zygote.running() as forker:
        with socket.socket(socket.AF_UNIX) as bad:
            bad.connect(forker.socket)
            bad.sendall(b"\0\0\0\0\0\0\0\x08not json")
            assert bad.recv(4) == b""  # closed without an answer
        env = {**os.environ, zygote.ZYGOTE_ENV: forker.socket}
        env.pop("CONTROL_API_SERVICE_DESCRIPTOR", None)
        done = subprocess.run(LAUNCHER, capture_output=True, text=True, timeout=120, env=env)
        assert forker.process.poll() is None
    assert "_run_forked_worker" in done.stderr


def test_without_a_zygote_the_launcher_runs_the_worker_itself(tmp_path):
    env = {**os.environ, zygote.ZYGOTE_ENV: str(tmp_path / "no-such-socket")}
    env.pop("CONTROL_API_SERVICE_DESCRIPTOR", None)
    done = subprocess.run(LAUNCHER, capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 1
    assert "CONTROL_API_SERVICE_DESCRIPTOR" in done.stderr and "_run_forked_worker" not in done.stderr


def test_a_forked_worker_exits_when_its_launcher_is_killed():
    # A control service that accepts connections and never answers: the worker waits on it.
    silent = socket.socket()
    silent.bind(("localhost", 0))
    silent.listen()
    with silent, zygote.running() as forker:
        process = forker.process
        env = {**os.environ, zygote.ZYGOTE_ENV: forker.socket,
               "CONTROL_API_SERVICE_DESCRIPTOR": f'url: "localhost:{silent.getsockname()[1]}"'}
        launcher = subprocess.Popen(LAUNCHER, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            assert wait_for(lambda: children_of(process.pid)), "the zygote forked no worker"
            (worker,) = children_of(process.pid)
            time.sleep(1)
            assert Path(f"/proc/{worker}").exists()  # waiting on the silent service
            launcher.send_signal(signal.SIGKILL)
            launcher.wait()
            assert wait_for(lambda: worker not in children_of(process.pid), timeout=10)
        finally:
            launcher.kill()
            launcher.wait()
