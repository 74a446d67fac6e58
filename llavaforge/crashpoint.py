"""Named points where a run can be made to stall, so a test can kill the process there
deterministically (SIGKILL, not a mocked exception).

Inert unless the environment variable LLAVAFORGE_STALL_AT is `<point>:<marker file>`: the
process reaching that point creates the marker file and sleeps until it is killed.

Points, in the order a run reaches them: `publish-filter` (nightly: filtering images published
before), `write-shard` (an image shard of the run folder written), `before-commit` (the run
folder is complete and verified, its ledger entry not yet written), `after-commit` (published,
superseded output not yet removed, lease not yet released).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

STALL_ENV = "LLAVAFORGE_STALL_AT"
STALL_SECONDS = 600.0
POINTS = ("publish-filter", "write-shard", "before-commit", "after-commit")


def stall_at(point: str) -> None:
    spec = os.environ.get(STALL_ENV)
    if not spec:
        return
    name, marker = spec.split(":", 1)
    if name not in POINTS:
        raise ValueError(f"{STALL_ENV}: unknown point {name!r}; points are {POINTS}")
    if name == point:
        Path(marker).touch()
        time.sleep(STALL_SECONDS)
