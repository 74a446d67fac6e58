"""Batch bounds when a preset and a recipe meet."""

from __future__ import annotations

from typing import Any


def fit_preset_batch_bounds(preset: dict[str, Any], explicit: dict[str, Any]) -> dict[str, Any]:
    """The preset's fields, with its `min_batch_size` lowered to a recipe's explicit
    `max_batch_size`: presets start batches full (min = max), and a recipe that only lowers
    the maximum means smaller batches, not an invalid configuration."""
    if "max_batch_size" in explicit and "min_batch_size" not in explicit and "min_batch_size" in preset:
        return {**preset, "min_batch_size": min(preset["min_batch_size"], explicit["max_batch_size"])}
    return preset
