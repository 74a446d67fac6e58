"""English words: which tokens are words at all, and which are too common to be telling.

Both lists are SCOWL word lists shipped as package data (`quality/data/README.md`), loaded
once per process. Inflections are in the lists themselves (SCOWL adds them), so lookups are
plain set membership after lower-casing.
"""

from __future__ import annotations

import gzip
from functools import lru_cache
from importlib import resources
from typing import FrozenSet

_DATA = "llavaforge.quality.data"


def _load(name: str) -> FrozenSet[str]:
    with resources.files(_DATA).joinpath(name).open("rb") as raw, gzip.open(raw, "rt", encoding="utf-8") as f:
        return frozenset(line.strip() for line in f if line.strip())


@lru_cache(maxsize=None)
def english_words() -> FrozenSet[str]:
    """SCOWL size 50 (american-english): about 74,000 words, names and abbreviations."""
    return _load("english_words.txt.gz")


@lru_cache(maxsize=None)
def common_words() -> FrozenSet[str]:
    """SCOWL size 10: the 4,000 most common words ("today", "best", "person", "watch")."""
    return _load("common_words.txt.gz")
