"""glibc's malloc gives each thread of a Beam process an arena of its own, and each arena keeps
what it freed; the fix caps a process at two.

Python frees a stage's records, messages and buffers when it is done with them (tracemalloc
sees ~10 MB of growth across a run), yet a local runner's or worker's RSS climbed with the run.
glibc hands each new thread an arena of its own (up to 8 per core), and freed space goes back to
the arena it came from, where only that arena's later allocations reuse it: the gRPC, data-plane
and bundle threads of a Beam process each keep a heap of their own. With two arenas,
`bench/scaling.py` with 2 workers at 10,000 images peaked at 643 MB per worker and 561 MB in
the job service, against 715 and 796 MB with glibc's defaults.

Tried and not kept: a fixed 1 MB mmap threshold as well (blocks over it mapped, and given back
when freed). It lowered the peaks as much, but fixing the threshold also pins the trim threshold
at 128 KB, so the heap shrinks and grows back on every large free: skipping a 2 GiB gzip member
took 216 s instead of 18.6 s.

The setting goes to this process through `mallopt`, and to every process it starts through the
environment glibc reads at start-up (the job service's zygote and its forked workers, the
DirectRunner's worker processes). A setting already in the environment is the user's (or was
applied at start-up) and is left alone.
"""

from __future__ import annotations

import ctypes
import os
import platform

# The environment variable glibc reads at start-up, mallopt's parameter number, the value.
SETTINGS = {"MALLOC_ARENA_MAX": (-8, 2)}


def limit_malloc_arenas() -> None:
    """Apply SETTINGS in this process from now on and in the processes it starts (idempotent;
    nothing where the C library is not glibc)."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return
    libc = ctypes.CDLL("libc.so.6")
    for name, (parameter, value) in SETTINGS.items():
        if name in os.environ:
            continue
        libc.mallopt(parameter, value)
        os.environ[name] = str(value)
