"""glibc's malloc keeps what a long-running Beam process frees; the fix hands large blocks back
to the system.

Python frees a stage's records, messages and buffers when it is done with them (tracemalloc
sees ~10 MB of growth across a run), yet a local runner's or worker's RSS climbed with the run,
because of two glibc defaults:
- a block over the mapping threshold (128 KB) gets a mapping of its own, given back when freed,
  but each such free raises the threshold to the block's size, up to 32 MB. After the first
  data-plane message (up to 10 MB) is freed, blocks that size come from the heap, and freed heap
  space below a block still in use stays resident;
- each thread that finds the allocator busy gets an arena of its own (up to 8 per core), so the
  gRPC, data-plane and bundle threads each keep their own freed space.
With a fixed 1 MB threshold (which also stops it rising) and two arenas, `bench/scaling.py` at
10,000 images with 2 workers peaked at 616 MB per worker and 514 MB in the job service, against
715 and 796 MB without.

The settings go to this process through `mallopt`, and to every process it starts through the
environment glibc reads at start-up (the job service's zygote and its forked workers, the
DirectRunner's worker processes). A setting already in the environment is the user's (or was
applied at start-up) and is left alone.
"""

from __future__ import annotations

import ctypes
import os
import platform

# The environment variable glibc reads at start-up, mallopt's parameter number, the value.
SETTINGS = {"MALLOC_MMAP_THRESHOLD_": (-3, 1 << 20), "MALLOC_ARENA_MAX": (-8, 2)}


def return_large_blocks_to_the_system() -> None:
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
