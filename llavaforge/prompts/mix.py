"""Deterministic per-image choices: same key + seed -> same tasks, instruction and sampling seed."""

from __future__ import annotations

import hashlib
from typing import Mapping, Sequence


def _stable_int(seed: int, *parts: str) -> int:
    text = "\x00".join([str(seed), *parts])
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


def stable_fraction(seed: int, *parts: str) -> float:
    """A number in [0, 1) fixed by the seed and the parts (no global random state)."""
    return _stable_int(seed, *parts) / 2**64


def request_seed(seed: int, key: str, task: str) -> int:
    """The sampling seed of one conversation (recorded on it)."""
    return _stable_int(seed, key, task, "sampling") % 2**31


def pick_instruction(seed: int, key: str, task: str, phrasings: Sequence[str]) -> str:
    return phrasings[int(stable_fraction(seed, key, task, "instruction") * len(phrasings))]


def choose_tasks(seed: int, key: str, tasks: Sequence[str], mix: str, weights: Mapping[str, float],
                 per_image: int = 1) -> list[str]:
    """The task types one image gets, in `tasks` order.

    `all`: every task. `weighted`: `per_image` distinct tasks drawn without replacement,
    each with probability proportional to its weight (a missing weight counts as 1), by
    weighted random sampling with keys u**(1/w) so every draw depends only on key + seed.
    """
    if mix == "all":
        return list(tasks)
    scored = []
    for task in tasks:
        weight = weights.get(task, 1.0)
        if weight <= 0:
            continue
        u = max(stable_fraction(seed, key, task, "mix"), 1e-300)
        scored.append((u ** (1.0 / weight), task))
    chosen = {task for _, task in sorted(scored, reverse=True)[:per_image]}
    return [t for t in tasks if t in chosen]
