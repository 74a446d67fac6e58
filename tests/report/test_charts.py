import numpy as np
import pytest

from llavaforge.report.charts import HIST_HEIGHT, bars, histogram, nice_width, stacked


@pytest.mark.parametrize("raw, width", [(0.3, 1), (1, 1), (1.5, 2), (3, 5), (7, 10), (10, 10), (23, 50), (180, 200)])
def test_nice_width(raw, width):
    assert nice_width(raw) == width


def test_small_integer_ranges_get_one_bin_per_value():
    h = histogram(np.array([1, 1, 2, 4]))
    assert [(b.label, b.count) for b in h.bins] == [("1", 2), ("2", 1), ("3", 0), ("4", 1)]
    assert not h.overflow and h.peak == 2
    assert max(b.height for b in h.bins) == HIST_HEIGHT


def test_outliers_go_to_one_overflow_bin_and_every_value_is_counted():
    values = np.concatenate([np.random.default_rng(0).integers(20, 400, 5000), [100_000]])
    h = histogram(values)
    assert h.overflow and h.bins[-1].label.startswith(">= ")
    assert sum(b.count for b in h.bins) == values.size
    assert h.max == 100_000 and len(h.bins) <= 32
    (width,) = {b.hi - b.lo + 1 for b in h.bins[:-1]}  # one round width for every regular bin
    assert nice_width(width) == width > 1


def test_no_values_no_histogram():
    assert histogram(np.zeros(0)) is None


def test_bars_are_largest_first_relative_to_the_largest():
    result = bars([("b", 5), ("a", 10), ("c", 5)], total=40, limit=2)
    assert [(b.label, b.count, b.percent, b.share) for b in result] == [("a", 10, 100.0, 25.0), ("b", 5, 50.0, 12.5)]
    assert bars([]) == []


def test_stacked_segments_add_up():
    segments = stacked([("written", 6), ("rejected", 3), ("duplicates", 1)])
    assert [s.percent for s in segments] == [60.0, 30.0, 10.0]
