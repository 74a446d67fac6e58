"""Progress of a running job, from wherever its stages run.

Each worker process adds to counters per stage (in, out, rejected, seconds) and a background
thread writes them every `FLUSH_S` seconds as one small JSON file of its own under the job's
progress folder (any fsspec URL, so it works for in-process, multi-process and portable
workers, and for Dataflow workers writing to a bucket). The driver sums the files
(`jobs/progress_display.py`). Nothing is reported unless the graph was built inside
`reporting_to(url)`: the stages record the URL when they are constructed, and it travels with
them to the workers.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import uuid
from collections import defaultdict
from typing import Iterator, Optional

FLUSH_S = 2.0
_building_for: Optional[str] = None


@contextlib.contextmanager
def reporting_to(url: Optional[str]) -> Iterator[None]:
    """Stages constructed inside this block report their progress under `url`."""
    global _building_for
    previous, _building_for = _building_for, url
    try:
        yield
    finally:
        _building_for = previous


def url_for_new_stage() -> Optional[str]:
    return _building_for


class _Reporter:
    """This process's counters for one progress folder, flushed by a daemon thread."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.name = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}.json"
        self.counts: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        self.lock = threading.Lock()
        self.dirty = False
        threading.Thread(target=self._flush_forever, name="llavaforge-progress", daemon=True).start()

    def add(self, stage: str, **amounts: float) -> None:
        with self.lock:
            counts = self.counts[stage]
            for name, amount in amounts.items():
                counts[name] += amount
            self.dirty = True

    def flush(self) -> None:
        from llavaforge.storage import join, write_atomic

        with self.lock:
            if not self.dirty:
                return
            snapshot = {stage: dict(values) for stage, values in self.counts.items()}
            self.dirty = False
        try:
            write_atomic(join(self.url, self.name), json.dumps(snapshot).encode())
        except OSError:
            pass  # progress is best effort: never fail the job for it

    def _flush_forever(self) -> None:
        event = threading.Event()
        while not event.wait(FLUSH_S):
            self.flush()


_reporters: dict[str, _Reporter] = {}
_reporters_lock = threading.Lock()


def reporter(url: Optional[str]) -> Optional[_Reporter]:
    """This process's reporter for `url` (None: not reporting)."""
    if not url:
        return None
    with _reporters_lock:
        if url not in _reporters:
            _reporters[url] = _Reporter(url)
        return _reporters[url]


class StageProgress:
    """What a DoFn carries to report progress: the folder (fixed when the graph is built) and,
    once set up on a worker, that process's reporter."""

    def __init__(self) -> None:
        self.url = url_for_new_stage()
        self._reporter: Optional[_Reporter] = None

    def __getstate__(self):
        return {"url": self.url}  # the reporter (a thread) stays in its process

    def __setstate__(self, state) -> None:
        self.url, self._reporter = state["url"], None

    def add(self, stage: str, **amounts: float) -> None:
        if self._reporter is None and self.url:
            self._reporter = reporter(self.url)  # on the worker, at its first element
        if self._reporter is not None:
            self._reporter.add(stage, **amounts)

    def flush(self) -> None:
        if self._reporter is not None:
            self._reporter.flush()


def flush_all() -> None:
    """Write every reporter's counters now (a worker that is about to finish a bundle)."""
    for r in list(_reporters.values()):
        r.flush()
