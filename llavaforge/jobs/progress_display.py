"""Live progress of a job the driver waits for: per-stage counts and rates and an estimate of
the time left, read from the workers' progress files (`llavaforge.progress`).

On a terminal the block of lines is redrawn in place every second; otherwise (a log file, a
scheduler) one plain line per stage is logged every `LOG_EVERY_S` seconds. `-q` turns it off.
The estimate: the share of input shards read gives the expected number of elements of each
stage (its upstream stage's output, scaled up); the time left is that of the stage furthest
behind, at its rate so far. Barrier stages (writing) are not part of it.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from collections import defaultdict
from typing import IO, Optional

from fsspec.core import url_to_fs

from llavaforge.schemas.record import in_flow_order

log = logging.getLogger("llavaforge.progress")
REDRAW_S = 1.0
LOG_EVERY_S = 30.0
_NOT_ESTIMATED = ("synthesize_assemble", "write_image", "write_review", "write_reject")


def read_counts(url: str) -> dict[str, dict[str, float]]:
    """Every worker file under the progress folder, summed per stage."""
    fs, root = url_to_fs(url)
    totals: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    try:
        paths = fs.glob(f"{root.rstrip('/')}/*.json")
    except (OSError, ValueError):
        return {}
    for path in paths:
        try:
            with fs.open(path, "r") as f:
                data = json.load(f)
        except (OSError, ValueError):
            continue  # being replaced right now: the next read has it
        for stage, values in data.items():
            for name, value in values.items():
                totals[stage][name] += value
    return {stage: dict(values) for stage, values in totals.items()}


def estimate_seconds_left(counts: dict[str, dict[str, float]], total_shards: int, elapsed: float) -> Optional[float]:
    read = counts.get("read", {})
    shards_done = read.get("in", 0)
    if not shards_done or elapsed <= 0:
        return None
    share_read = min(1.0, shards_done / max(total_shards, 1))
    left, upstream_out = 0.0, None
    for stage in in_flow_order(counts):
        values = counts[stage]
        if stage == "read":
            expected = total_shards
        elif upstream_out is None or stage in _NOT_ESTIMATED:
            continue
        else:
            expected = upstream_out / share_read
        done = values.get("in", 0)
        rate = done / elapsed
        if done < expected:
            if rate <= 0:
                return None
            left = max(left, (expected - done) / rate)
        upstream_out = values.get("out", 0)
    return left


def _duration(seconds: Optional[float]) -> str:
    if seconds is None:
        return "estimating"
    seconds = int(seconds)
    return f"{seconds // 3600}h{seconds // 60 % 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"


def render(counts: dict[str, dict[str, float]], total_shards: int, elapsed: float, final: bool = False) -> list[str]:
    left = estimate_seconds_left(counts, total_shards, elapsed)
    lines = [f"progress    {'finished in ' + _duration(elapsed) if final else _duration(elapsed) + ' elapsed'}"
             + ("" if final else f", about {_duration(left)} left")]
    for stage in in_flow_order(counts):
        v = counts[stage]
        rate = v.get("in", 0) / elapsed if elapsed > 0 else 0.0
        unit = "shards" if stage == "read" else "in"
        lines.append(f"  {stage:<20} {int(v.get('in', 0)):>9,} {unit:<6} {int(v.get('out', 0)):>9,} out "
                     f"{int(v.get('rejected', 0)):>7,} rejected  {rate:>8.1f}/s")
    return lines


class ProgressMonitor:
    """A thread that shows the job's progress until stopped."""

    def __init__(self, url: str, total_shards: int, stream: Optional[IO[str]] = None,
                 interactive: Optional[bool] = None, log_every_s: Optional[float] = None) -> None:
        self.url = url
        self.total_shards = total_shards
        self.stream = stream or sys.stderr
        self.interactive = self.stream.isatty() if interactive is None else interactive
        self.log_every_s = LOG_EVERY_S if log_every_s is None else log_every_s
        self._stop = threading.Event()
        self._drawn = 0
        self._started = time.monotonic()
        self._thread = threading.Thread(target=self._loop, name="llavaforge-progress-display", daemon=True)

    def __enter__(self) -> "ProgressMonitor":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.show(final=True)

    def show(self, final: bool = False) -> None:
        lines = render(read_counts(self.url), self.total_shards, time.monotonic() - self._started, final)
        if self.interactive:
            up = f"\x1b[{self._drawn}F" if self._drawn else ""
            self.stream.write(up + "".join(f"\x1b[2K{line}\n" for line in lines))
            self.stream.flush()
            self._drawn = len(lines)
        else:
            for line in lines:
                log.info(line)

    def _loop(self) -> None:
        wait = REDRAW_S if self.interactive else self.log_every_s
        while not self._stop.wait(wait):
            self.show()
