"""This process and the processes it starts hand large freed blocks back to the system
(runners/allocator.py)."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's allocator")

# Ten 64 KB blocks in use between ten freed 8 MB ones, after a 10 MB block was freed (which,
# by glibc's default, raises the threshold for a mapping of its own above 8 MB): prints the MB of
# RSS still held. `mended` applies the fix first; `child` runs this again in a new process.
HOLD = """
import os, subprocess, sys
from llavaforge.runners.allocator import return_large_blocks_to_the_system

def rss_mb():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) // 1024

if sys.argv[1] in ("mended", "child"):
    return_large_blocks_to_the_system()
if sys.argv[1] == "child":
    print(subprocess.run([sys.executable, "-c", sys.argv[2], "plain", ""], capture_output=True, text=True).stdout)
    sys.exit()
first = bytearray(10 << 20)
del first
start = rss_mb()
blocks, in_use = [], []
for _ in range(10):
    blocks.append(bytearray(8 << 20))
    in_use.append(bytearray(64 << 10))
del blocks
print(rss_mb() - start)
"""


def held_mb(mode: str, env: dict) -> int:
    done = subprocess.run([sys.executable, "-c", HOLD, mode, HOLD], capture_output=True, text=True, env=env,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return int(done.stdout.split()[0])


def test_freed_large_blocks_go_back_here_and_in_started_processes():
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    assert held_mb("plain", env) >= 60  # glibc alone keeps the ten freed blocks
    assert held_mb("mended", env) < 8
    assert held_mb("child", env) < 8  # a process started afterwards, through its environment


def test_a_setting_in_the_environment_is_left_alone():
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")},
           "MALLOC_MMAP_THRESHOLD_": str(32 << 20)}  # the user's: blocks up to 32 MB from the heap
    assert held_mb("mended", env) >= 60
