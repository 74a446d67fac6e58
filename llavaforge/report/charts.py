"""Chart geometry for the report: histograms of integer distributions and bar lists.

The page draws these as inline SVG and CSS bars from the template. Every chart here is a
histogram or a bar list, which takes a few lines of geometry; a charting library would add
a few hundred kilobytes of JavaScript to every report, draw only after the script runs, and
be one more dependency to vendor and keep current, for no chart this page needs.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass
from typing import Iterable, Optional, TypeVar

import numpy as np

HIST_WIDTH, HIST_HEIGHT = 360, 120  # SVG user units of the plot area
T = TypeVar("T")


@dataclass
class Bin:
    lo: int
    hi: int  # inclusive
    count: int
    label: str
    x: float
    y: float
    width: float
    height: float


@dataclass
class Histogram:
    count: int
    mean: float
    p50: float
    p90: float
    p99: float
    min: int
    max: int
    bins: list[Bin]
    overflow: bool  # the last bin holds everything above the 99th percentile

    @property
    def peak(self) -> int:
        return max(b.count for b in self.bins)


def nice_width(raw: float) -> int:
    """The smallest of 1, 2, 5 x 10^k that is at least `raw` (and at least 1)."""
    if raw <= 1:
        return 1
    exponent = 10 ** math.floor(math.log10(raw))
    for step in (1, 2, 5, 10):
        if step * exponent >= raw:
            return int(step * exponent)
    raise AssertionError("unreachable")


def histogram(values: np.ndarray, max_bins: int = 30) -> Optional[Histogram]:
    """Bins of round width over min..p99; values above p99 go to one last overflow bin, so one
    outlier does not squash the chart. None when there are no values."""
    values = np.asarray(values, dtype=np.int64)
    if values.size == 0:
        return None
    lo, hi = int(values.min()), int(values.max())
    p50, p90, p99_exact = np.percentile(values, [50, 90, 99])  # one call: one partial sort
    p99 = int(math.ceil(p99_exact))
    overflow = hi > p99 and hi - lo + 1 > max_bins
    top = p99 if overflow else hi
    width = nice_width((top - lo + 1) / max_bins)
    start = lo - lo % width
    edges = list(range(start, top + 1, width))
    counts = [int(((values >= e) & (values < e + width)).sum()) for e in edges]
    labels = [str(e) if width == 1 else f"{e}-{e + width - 1}" for e in edges]
    if overflow:
        edges.append(edges[-1] + width)
        counts.append(int((values >= edges[-1]).sum()))
        labels.append(f">= {edges[-1]}")
    peak = max(counts) or 1
    slot = HIST_WIDTH / len(edges)
    bins = []
    for i, (edge, count, label) in enumerate(zip(edges, counts, labels)):
        height = HIST_HEIGHT * count / peak
        upper = hi if overflow and i == len(edges) - 1 else edge + width - 1
        bins.append(Bin(lo=edge, hi=upper, count=count, label=label, x=round(i * slot + 0.5, 2),
                        y=round(HIST_HEIGHT - height, 2), width=round(max(slot - 1, 0.5), 2),
                        height=round(height, 2)))
    return Histogram(count=int(values.size), mean=float(values.mean()), p50=float(p50), p90=float(p90),
                     p99=float(p99_exact), min=lo, max=hi, bins=bins, overflow=overflow)


@dataclass
class Bar:
    label: str
    count: int
    percent: float  # of the largest bar, for the bar's width
    share: float  # of `total`, for the text


def largest(items: Iterable[tuple[T, int]], limit: Optional[int] = None) -> list[tuple[T, int]]:
    """(label, count) pairs, largest count first, ties by label; the first `limit` of them."""
    key = lambda item: (-item[1], str(item[0]))  # noqa: E731
    return sorted(items, key=key) if limit is None else heapq.nsmallest(limit, items, key=key)


def bars(items: Iterable[tuple[str, int]], total: Optional[int] = None, limit: Optional[int] = None) -> list[Bar]:
    """Bars, largest first (ties by label), widths relative to the largest."""
    ordered = largest(items, limit)
    if not ordered:
        return []
    peak = ordered[0][1] or 1
    total = total if total else sum(count for _, count in ordered) or 1
    return [Bar(label=str(label), count=count, percent=round(100 * count / peak, 2),
                share=round(100 * count / total, 1)) for label, count in ordered]


@dataclass
class Segment:
    name: str
    value: int
    percent: float  # of the whole bar


def stacked(parts: list[tuple[str, int]]) -> list[Segment]:
    """Segments of one bar that adds up to the sum of the parts."""
    total = sum(value for _, value in parts) or 1
    return [Segment(name=name, value=value, percent=round(100 * value / total, 3)) for name, value in parts]
