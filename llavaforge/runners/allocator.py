"""glibc's malloc keeps what a Beam process frees; the fixes cap a process at two arenas and hand
freed heap back to the system every few seconds.

Python frees a stage's records, messages and buffers when it is done with them (tracemalloc
sees ~10 MB of growth across a run), yet a local runner's or worker's RSS climbed with the run.
glibc hands each new thread an arena of its own (up to 8 per core), and freed space goes back to
the arena it came from, where only that arena's later allocations reuse it: the gRPC, data-plane
and bundle threads of a Beam process each keep a heap of their own. With two arenas,
`bench/scaling.py` with 2 workers at 10,000 images peaked at 643 MB per worker and 561 MB in
the job service, against 715 and 796 MB with glibc's defaults.

Even in two arenas a worker's heap held more freed space the larger the run. In a worker at
50,000 images (mallinfo2 after every bundle) the bytes in use stayed at 190-230 MB, as at 1,000,
while the free bytes rose from 15 to 120-220 MB: free chunks between live ones, which glibc's own
trimming (the top of the heap only) never reaches, and the next stage's peak sat on top of them.
`malloc_trim` gives their pages back wherever they are. A thread of its own calls it every
TRIM_EVERY_S, and less often where a trim takes longer than TRIM_TIME_SHARE of the time between
(it walks the heap: 10-20 ms at a few hundred MB). Worker peak at 50,000 images: 790 MB without,
733 MB with the thread (594 MB at 1,000), and 742 MB with a trim after each bundle instead: a long
bundle (the checks, the shard writer) grew free space of its own before it ended.

Tried and not kept: a fixed 1 MB mmap threshold as well (blocks over it mapped, and given back
when freed). It lowered the peaks as much, but fixing the threshold also pins the trim threshold
at 128 KB, so the heap shrinks and grows back on every large free: skipping a 2 GiB gzip member
took 216 s instead of 18.6 s.

The arena setting goes to this process through `mallopt`, and to every process it starts through
the environment glibc reads at start-up (the job service's zygote and its forked workers, the
DirectRunner's worker processes). A setting already in the environment is the user's (or was
applied at start-up) and is left alone.
"""

from __future__ import annotations

import ctypes
import os
import platform
import threading
import time

# The environment variable glibc reads at start-up, mallopt's parameter number, the value.
SETTINGS = {"MALLOC_ARENA_MAX": (-8, 2)}

TRIM_EVERY_S = 2.0
# The most of a process's time that trimming may take.
TRIM_TIME_SHARE = 0.02


def _glibc() -> ctypes.CDLL | None:
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    return ctypes.CDLL("libc.so.6")


def limit_malloc_arenas() -> None:
    """Apply SETTINGS in this process from now on and in the processes it starts (idempotent;
    nothing where the C library is not glibc)."""
    libc = _glibc()
    if libc is None:
        return
    for name, (parameter, value) in SETTINGS.items():
        if name in os.environ:
            continue
        libc.mallopt(parameter, value)
        os.environ[name] = str(value)


def pause_after_trim(trim_s: float) -> float:
    return max(TRIM_EVERY_S, trim_s / TRIM_TIME_SHARE)


_trimming_in: int | None = None  # the process whose thread trims (a forked child has none)


def trim_heap_periodically() -> None:
    """Start this process's thread that gives freed heap back (once per process; nothing where
    the C library is not glibc). Not in the zygote: it forks, and each forked worker starts its own."""
    global _trimming_in
    libc = _glibc()
    if libc is None or _trimming_in == os.getpid():
        return
    _trimming_in = os.getpid()

    def trim_forever() -> None:
        while True:
            start = time.monotonic()
            libc.malloc_trim(0)  # ctypes lets go of the GIL for the call
            time.sleep(pause_after_trim(time.monotonic() - start))

    threading.Thread(target=trim_forever, name="heap-trim", daemon=True).start()
