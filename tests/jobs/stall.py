"""Run the CLI in a child process that stalls at a crash point, then kill it with SIGKILL."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

from llavaforge.crashpoint import STALL_ENV
from tests.conftest import own_temporary_folder

REPO = Path(__file__).resolve().parents[2]


@contextlib.contextmanager
def stalled(args: list[str], point: str, marker: Path, timeout_s: float = 240) -> Iterator[subprocess.Popen]:
    """The CLI (`args` after `llavaforge`) running in a child process, stalled at `point`
    while the block runs; SIGKILLed (with its process group) when the block ends."""
    env = {**os.environ, STALL_ENV: f"{point}:{marker}",
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    # The killed run's temporary folders go with this one.
    with own_temporary_folder(env) as child_env:
        child = subprocess.Popen([sys.executable, "-m", "llavaforge.cli", "-q", *args], env=child_env,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
        try:
            deadline = time.time() + timeout_s
            while not marker.exists():
                if child.poll() is not None:
                    raise AssertionError(f"the run ended before reaching {point}: {child.stderr.read().decode()[-2000:]}")
                assert time.time() < deadline, f"the run never reached {point}"
                time.sleep(0.1)
            yield child
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, signal.SIGKILL)
            child.wait()
            child.stderr.close()
