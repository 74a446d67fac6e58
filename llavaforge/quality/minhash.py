"""Near-identical short texts (questions): normalisation, MinHash signatures and LSH bands."""

from __future__ import annotations

import hashlib
import re

import numpy as np

from llavaforge.schemas.llava import IMAGE_TOKEN

_NOT_WORD = re.compile(r"[^a-z0-9]+")
SHINGLE_CHARS = 4
NUM_PERM = 64
ROWS_PER_BAND = 4  # 16 bands of 4: pairs above ~0.5 Jaccard become candidates, then verified


# Words that change nothing about what a question asks; question words and "many" stay.
_FILLER = frozenset({"a", "an", "the", "this", "that", "these", "those", "is", "are", "in", "on",
                     "of", "there", "please", "can", "you", "could", "would", "me", "tell"})


def normalise_question(text: str) -> str:
    """Lower case, words only, filler dropped: "<image>\\nWhat is in this image?" and
    "what is in the image" are one question."""
    words = _NOT_WORD.sub(" ", text.replace(IMAGE_TOKEN, "").lower()).split()
    return " ".join(w for w in words if w not in _FILLER)


def shingles(text: str, size: int = SHINGLE_CHARS) -> set[str]:
    if len(text) <= size:
        return {text}
    return {text[i:i + size] for i in range(len(text) - size + 1)}


def _stable_hash(shingle: str) -> int:
    # Python's hash() is salted per process: workers must agree on signatures.
    return int.from_bytes(hashlib.blake2b(shingle.encode(), digest_size=8).digest(), "little")


class MinHasher:
    """MinHash over NUM_PERM multiply-shift hash functions, fixed by `seed`."""

    def __init__(self, num_perm: int = NUM_PERM, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self._a = rng.integers(1, 2**63, size=num_perm, dtype=np.uint64) | np.uint64(1)
        self._b = rng.integers(0, 2**63, size=num_perm, dtype=np.uint64)

    def signature(self, text: str) -> tuple[int, ...]:
        x = np.array(sorted(_stable_hash(s) for s in shingles(text)), dtype=np.uint64)
        # uint64 arithmetic wraps (mod 2**64), which multiply-shift hashing relies on.
        hashed = (np.outer(x, self._a) + self._b) >> np.uint64(32)
        return tuple(int(v) for v in hashed.min(axis=0))


def similarity(a: tuple[int, ...], b: tuple[int, ...]) -> float:
    """Estimated Jaccard similarity: the share of equal signature positions."""
    return sum(x == y for x, y in zip(a, b)) / len(a)


def bands(signature: tuple[int, ...], rows: int = ROWS_PER_BAND) -> list[tuple[int, tuple[int, ...]]]:
    return [(i // rows, signature[i:i + rows]) for i in range(0, len(signature), rows)]
