"""This process and the processes it starts keep two malloc arenas (runners/allocator.py)."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's allocator")

# Six threads alive at once, each allocating from the heap; glibc's malloc_stats then lists the
# arenas (on stderr). `mended` applies the fix first; `child` runs this again, unmended, in a
# process started afterwards.
COUNT_ARENAS = """
import ctypes, subprocess, sys, threading
from llavaforge.runners.allocator import limit_malloc_arenas

if sys.argv[1] in ("mended", "child"):
    limit_malloc_arenas()
if sys.argv[1] == "child":
    done = subprocess.run([sys.executable, "-c", sys.argv[2], "plain", ""], capture_output=True, text=True)
    sys.stderr.write(done.stderr)
    sys.exit()
held = []
together = threading.Barrier(6)

def allocate():
    together.wait()
    held.append(bytearray(64 << 10))  # over Python's small-object size, under glibc's mmap threshold
    together.wait()

threads = [threading.Thread(target=allocate) for _ in range(6)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
ctypes.CDLL("libc.so.6").malloc_stats()
"""


def arenas(mode: str, env: dict) -> int:
    done = subprocess.run([sys.executable, "-c", COUNT_ARENAS, mode, COUNT_ARENAS], capture_output=True,
                          text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return sum(line.startswith("Arena ") for line in done.stderr.splitlines())


def environment(**settings: str) -> dict:
    return {**{k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}, **settings}


def test_threads_share_two_arenas_here_and_in_started_processes():
    assert arenas("plain", environment()) >= 6  # glibc alone: an arena per thread
    assert arenas("mended", environment()) == 2
    assert arenas("child", environment()) == 2  # through the environment


def test_a_setting_in_the_environment_is_left_alone():
    assert arenas("mended", environment(MALLOC_ARENA_MAX="4")) == 4
