"""Label lists shipped in `llavaforge/models/data/` (see the README there for sources)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

DATA = Path(__file__).resolve().parent / "data"


def _lines(name: str) -> tuple[str, ...]:
    return tuple(line for line in (DATA / name).read_text().splitlines() if line.strip())


@lru_cache(maxsize=None)
def coco_classes() -> tuple[str, ...]:
    """The 80 COCO categories: default labels of open-vocabulary detectors."""
    return _lines("coco_classes.txt")


@lru_cache(maxsize=None)
def tag_vocabulary() -> tuple[str, ...]:
    """Default zero-shot tag vocabulary: COCO classes + common objects and scenes."""
    return _lines("tag_vocabulary.txt")


@lru_cache(maxsize=None)
def imagenet_classes() -> tuple[str, ...]:
    """ImageNet-1k class names in output order, as their WordNet lemmas ("tabby, tabby cat")."""
    return tuple(line.split("\t", 1)[1] for line in _lines("imagenet_classes.txt"))
