"""Beam's Python portable job service with its SDK worker in a separate process, offline.

Why not Prism (the default portable runner): it downloads a binary from GitHub. This module
serves Beam's own `LocalJobServicer`; its one SDK worker is a separate Python process started
by the job service (`beam:env:harness_subprocess_python:v1`), so every DoFn, model handler and
record crosses a process boundary pickled, as on a distributed runner. One worker, not more:
Beam's local runner loses elements when several run a stage at once (`runners/options.py`
refuses `--sdk_worker_parallelism` above 1).

Start the service, then point any run at it:

    python -m llavaforge.runners.portable --port 8099 &
    llavaforge run --input 'shards/*.tar' --output out/ $(python -m llavaforge.runners.portable --args-for localhost:8099)

or let `job_service()` start and stop it around one run (the tests do).
"""

from __future__ import annotations

import argparse
import contextlib
import shlex
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator, NamedTuple, Optional, Sequence

from apache_beam.runners.portability import local_job_service

SUBPROCESS_ENVIRONMENT = "beam:env:harness_subprocess_python:v1"
START_TIMEOUT_S = 60.0


def serve(port: int = 0) -> tuple[local_job_service.LocalJobServicer, int]:
    """Start the job service in this process; returns (servicer, port)."""
    servicer = local_job_service.LocalJobServicer()
    return servicer, servicer.start_grpc_server(port)


WORKER_SCRIPT = "llavaforge-sdk-worker"


def sdk_worker() -> None:
    """The `llavaforge-sdk-worker` console script: Beam's SDK worker. A one-word command keeps
    `--environment_config` free of spaces, so the flags survive `$(...)` in a shell."""
    from apache_beam.runners.worker import sdk_worker_main

    sdk_worker_main.main(sys.argv)


def worker_command(python: Optional[str] = None) -> str:
    """How the job service starts an SDK worker: the console script beside `python` (default:
    this interpreter) when installed, else `python -m` Beam's worker module."""
    interpreter = Path(python or sys.executable)
    script = interpreter.parent / WORKER_SCRIPT
    if script.exists():
        return str(script)
    return f"{shlex.quote(str(interpreter))} -m apache_beam.runners.worker.sdk_worker_main"


def portable_args(job_endpoint: str, python: Optional[str] = None) -> list[str]:
    """Beam flags for a run on the job service at `job_endpoint`, its SDK worker process
    started with `python` (default: this interpreter)."""
    return ["--runner=PortableRunner", f"--job_endpoint={job_endpoint}",
            f"--environment_type={SUBPROCESS_ENVIRONMENT}", f"--environment_config={worker_command(python)}"]


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
    pid: int  # of the job service process (its SDK worker is its child)


@contextlib.contextmanager
def job_service() -> Iterator[JobService]:
    """Run the job service as a separate process for the duration of the block."""
    port = _free_port()
    process = subprocess.Popen([sys.executable, "-m", "llavaforge.runners.portable", "--port", str(port)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for_port(port, process)
        yield JobService(portable_args(f"localhost:{port}"), process.pid)
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
    args = p.parse_args(argv)
    if args.args_for:
        from llavaforge.runners.options import flags_for_command_substitution

        print(flags_for_command_substitution(portable_args(args.args_for)))
        return 0
    _, port = serve(args.port)
    print(f"llavaforge job service listening on localhost:{port}", flush=True)
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    sys.exit(main())
