"""Beam's Python portable job service with several SDK worker processes, offline.

Why not stock Beam: Prism (the default portable runner) downloads a binary from GitHub, and
Beam's Python job service (`local_job_service_main`) runs every stage on ONE SDK worker per
environment whatever `--sdk_worker_parallelism` says (in 2.77 its FnApiRunner reads the
worker count only on the in-process DirectRunner path). This module serves the same
`LocalJobServicer`, with a job type whose runner starts `--sdk_worker_parallelism` workers.
Each worker is a separate Python process started by the job service
(`beam:env:harness_subprocess_python:v1`), so every DoFn, model handler and record crosses
a process boundary pickled, as on a distributed runner; the process is forked from the
service's zygote (`zygote.py`), which has imported what a worker needs. The service runs with Beam's data-plane
flush race fixed (`flush_race.py`): without the fix, bundles with large inputs lose elements
on their way to the workers.

Start the service, then point any run at it:

    python -m llavaforge.runners.portable --port 8099 &
    llavaforge run --input 'shards/*.tar' --output out/ $(python -m llavaforge.runners.portable --args-for localhost:8099 --workers 2)

or let `job_service()` start and stop it around one run (the tests do).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator, NamedTuple, Optional, Sequence

from apache_beam.options.pipeline_options import PortableOptions
from apache_beam.runners.portability import local_job_service
from apache_beam.runners.portability.fn_api_runner import fn_runner

from llavaforge.runners import zygote
from llavaforge.runners.options import cores_shared_between, flags_for_command_substitution, mend_local_runner

SUBPROCESS_ENVIRONMENT = "beam:env:harness_subprocess_python:v1"
START_TIMEOUT_S = 60.0


class _ParallelFnApiRunner(fn_runner.FnApiRunner):
    """FnApiRunner with a fixed number of SDK workers per environment."""

    def __init__(self, num_workers: int, **kwargs) -> None:
        super().__init__(**kwargs)
        # The attribute FnApiRunner.run_pipeline sets from --direct_num_workers; the job
        # service path (run_via_runner_api) never sets it.
        self._num_workers = num_workers


class ParallelBeamJob(local_job_service.BeamJob):
    """A job of the local job service that runs on `--sdk_worker_parallelism` workers."""

    def _invoke_runner(self):
        self.set_state(local_job_service.beam_job_api_pb2.JobState.RUNNING)
        options = self.pipeline_options()
        # Options arrive from the job's Struct untyped (a string or a float).
        workers = max(1, int(float(options.view_as(PortableOptions).sdk_worker_parallelism or 1)))
        with cores_shared_between(workers):
            return _ParallelFnApiRunner(workers, provision_info=self._provision_info).run_via_runner_api(
                self._pipeline_proto, options)


def serve(port: int = 0) -> tuple[local_job_service.LocalJobServicer, int]:
    """Start the job service in this process; returns (servicer, port)."""
    mend_local_runner()
    servicer = local_job_service.LocalJobServicer(beam_job_type=ParallelBeamJob)
    return servicer, servicer.start_grpc_server(port)


# The console script `zygote.launch_worker`: Beam's SDK worker, forked from the job service's
# zygote. A one-word command keeps `--environment_config` free of spaces, so the flags survive
# `$(...)` in a shell.
WORKER_SCRIPT = "llavaforge-sdk-worker"


def worker_command(python: Optional[str] = None) -> str:
    """How the job service starts an SDK worker: the console script beside `python` (default:
    this interpreter) when installed, else `python -m` Beam's worker module."""
    interpreter = Path(python or sys.executable)
    script = interpreter.parent / WORKER_SCRIPT
    if script.exists():
        return str(script)
    return f"{shlex.quote(str(interpreter))} -m apache_beam.runners.worker.sdk_worker_main"


def portable_args(job_endpoint: str, workers: int = 2, python: Optional[str] = None) -> list[str]:
    """Beam flags for a run on the job service at `job_endpoint` with `workers` SDK worker
    processes started with `python` (default: this interpreter)."""
    return ["--runner=PortableRunner", f"--job_endpoint={job_endpoint}",
            f"--environment_type={SUBPROCESS_ENVIRONMENT}", f"--environment_config={worker_command(python)}",
            f"--sdk_worker_parallelism={workers}",
            # Beam's driver otherwise runs `pip freeze` (~2 s) to stage a list of its packages for
            # the workers to compare with theirs; local workers run the driver's interpreter.
            "--experiments=disable_logging_submission_environment"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _wait_for_port(port: int, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the job service exited with code {process.returncode} before serving")
        with contextlib.suppress(OSError), socket.create_connection(("localhost", port), timeout=1):
            return
        time.sleep(0.2)
    raise TimeoutError(f"the job service did not open port {port} in {START_TIMEOUT_S:.0f} s")


class JobService(NamedTuple):
    flags: list[str]  # Beam flags of a run on this service
    pid: int  # of the job service process (the SDK workers are its children)


@contextlib.contextmanager
def job_service(workers: int = 2) -> Iterator[JobService]:
    """Run the job service as a separate process for the duration of the block, for runs
    with `workers` SDK worker processes."""
    port = _free_port()
    # The service's zygote starts here, so its imports overlap the service's own.
    with zygote.running() as forker:
        process = subprocess.Popen([sys.executable, "-m", "llavaforge.runners.portable", "--port", str(port)],
                                   env={**os.environ, zygote.ZYGOTE_ENV: forker.socket},
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            _wait_for_port(port, process)
            yield JobService(portable_args(f"localhost:{port}", workers), process.pid)
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m llavaforge.runners.portable", description=__doc__.split("\n")[0])
    p.add_argument("--port", type=int, default=8099, help="port of the job service (0: any free port)")
    p.add_argument("--args-for", metavar="HOST:PORT",
                   help="print the Beam flags of a run on the job service at HOST:PORT, and exit")
    p.add_argument("--workers", type=int, default=2, help="SDK worker processes per stage (with --args-for)")
    args = p.parse_args(argv)
    if args.args_for:
        print(flags_for_command_substitution(portable_args(args.args_for, args.workers)))
        return 0
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # `job_service()` stops it so: clean up
    with contextlib.ExitStack() as stack:
        if zygote.ZYGOTE_ENV not in os.environ:
            # The process workers are forked from (`zygote.py`); this service passes its
            # environment to every worker it starts. It imports while the service waits for a job.
            os.environ[zygote.ZYGOTE_ENV] = stack.enter_context(zygote.running()).socket
        servicer, port = serve(args.port)
        stack.callback(servicer.stop)  # removes the folder it staged jobs' artifacts in
        print(f"llavaforge job service listening on localhost:{port}", flush=True)
        while True:
            time.sleep(3600)


if __name__ == "__main__":
    sys.exit(main())
