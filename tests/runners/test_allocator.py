"""This process and the processes it starts keep two malloc arenas, and a thread gives freed heap
back while a pipeline runs (runners/allocator.py)."""

from __future__ import annotations

import os
import platform

import pytest

from llavaforge.runners.allocator import TRIM_EVERY_S, pause_after_trim
from tests.conftest import run_python

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
    done = run_python(COUNT_ARENAS, mode, COUNT_ARENAS, env=env, timeout=120)
    return sum(line.startswith("Arena ") for line in done.stderr.splitlines())


def environment(**settings: str) -> dict:
    return {**{k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}, **settings}


def test_threads_share_two_arenas_here_and_in_started_processes():
    assert arenas("plain", environment()) >= 6  # glibc alone: an arena per thread
    assert arenas("mended", environment()) == 2
    assert arenas("child", environment()) == 2  # through the environment


def test_a_setting_in_the_environment_is_left_alone():
    assert arenas("mended", environment(MALLOC_ARENA_MAX="4")) == 4


# One bundle leaves the heap fragmented: 150,000 blocks of 1 KB (malloc's, not Python's small
# objects), of which every 32nd stays alive to the end, so the freed space lies between live
# blocks, where glibc's own trimming (the top of the heap) does not reach. The next stage waits
# up to three trim periods for the process to hold less than 50 MB of it, and prints what it
# holds. `mended` starts the trimming thread first.
FRAGMENT_THEN_MEASURE = """
import sys, time
import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions
from llavaforge.runners.allocator import TRIM_EVERY_S, trim_heap_periodically

if sys.argv[1] == "mended":
    trim_heap_periodically()
kept = []

def rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20

def fragment(_):
    before = rss_mb()
    blocks = [bytes(1024) for _ in range(150_000)]
    kept.extend(blocks[::32])
    del blocks
    return before

def held(before):
    waited = time.monotonic() + 3 * TRIM_EVERY_S
    while rss_mb() - before >= 50 and time.monotonic() < waited:
        time.sleep(0.1)
    print(f"HELD {rss_mb() - before:.0f}")

options = PipelineOptions(["--runner=DirectRunner", "--direct_running_mode=in_memory"])
with beam.Pipeline(options=options) as p:
    p | beam.Create([0]) | beam.Map(fragment) | beam.Reshuffle() | beam.Map(held)
"""


def held_after_fragmenting(mode: str) -> float:
    done = run_python(FRAGMENT_THEN_MEASURE, mode, env=environment(MALLOC_ARENA_MAX="2"), timeout=300)
    return float(next(line.split()[1] for line in done.stdout.splitlines() if line.startswith("HELD ")))


def test_freed_heap_goes_back_while_the_pipeline_runs():
    # 150 MB allocated, 5 MB of it kept
    assert held_after_fragmenting("plain") > 100
    assert held_after_fragmenting("mended") < 50


def test_trims_take_at_most_their_share_of_the_time():
    assert pause_after_trim(0.01) == TRIM_EVERY_S
    assert pause_after_trim(0.2) == pytest.approx(10.0)  # 2% of the time
