"""Dedup: one record per distinct image across the whole run.

Exact duplicates share a sha256. Which copy is kept does not depend on arrival order: the
one with the smallest (shard URL, member name) wins; the others become rejects with reason
`duplicate` and a pointer to the kept copy. Near duplicates (resized, re-encoded, slightly
cropped copies) are within a pHash Hamming distance: `NearDedup`, same rule for which is kept.
"""

from __future__ import annotations

from typing import Iterable, Iterator, NamedTuple, Optional, Union

import apache_beam as beam
import numpy as np

from llavaforge.schemas.record import DUPLICATE_REASON, NEAR_DUPLICATE_REASON, ImageRecord, Reject
from llavaforge.transforms.base import StageFn, apply_stage_fn, join_by_key

STAGE = "dedup"


def choose_kept(records: Iterable[ImageRecord]) -> tuple[ImageRecord, list[ImageRecord]]:
    ordered = sorted(records, key=lambda r: r.source.sort_key)
    return ordered[0], ordered[1:]


def duplicate_reject(record: ImageRecord, kept: ImageRecord, reason: str = DUPLICATE_REASON,
                     detail: str = "") -> Reject:
    pointer = f"duplicate of {kept.key} ({kept.source.url} :: {kept.source.member})"
    return Reject.of(record.key, record.source, STAGE, reason, f"{pointer}{detail}")


class _KeepFirstFn(StageFn):
    stage = STAGE

    def process_element(self, element: tuple[str, Iterable[ImageRecord]]) -> Iterator[Union[ImageRecord, Reject]]:
        _, group = element
        kept, dropped = choose_kept(group)
        yield kept
        for record in dropped:
            yield duplicate_reject(record, kept)


class ExactDedup(beam.PTransform):
    """ImageRecords -> (distinct records, duplicate rejects), grouped by sha256."""

    def expand(self, records):
        groups = (
            records
            | "BySha256" >> beam.Map(lambda r: (r.image.source_sha256, r))
            | "GroupSameBytes" >> beam.GroupByKey()
        )
        return apply_stage_fn(groups, _KeepFirstFn(), "KeepFirst")


# --- near duplicates -------------------------------------------------------------------------

PHASH_BITS = 64


def hash_bands(max_distance: int, bits: int = PHASH_BITS) -> list[tuple[int, int]]:
    """(shift, width) of max_distance + 1 bands covering all bits, widths as equal as possible.

    Pigeonhole: hashes within `max_distance` differing bits agree on at least one band, so
    comparing only hashes that share a band misses no pair.
    """
    count = max_distance + 1
    widths = [bits // count + (1 if i < bits % count else 0) for i in range(count)]
    bands, shift = [], 0
    for width in widths:
        bands.append((shift, width))
        shift += width
    return bands


def band_keys(phash: int, bands: list[tuple[int, int]]) -> list[tuple[int, int]]:
    return [(i, (phash >> shift) & ((1 << width) - 1)) for i, (shift, width) in enumerate(bands)]


class HashedImage(NamedTuple):
    """What near-dedup compares: small, so buckets never carry image bytes."""

    rank: tuple[str, str, str]  # (shard URL, member, key): the smallest in a group is kept
    key: str
    phash: int


def hashed_image(record: ImageRecord) -> Optional[HashedImage]:
    try:
        phash = int(record.image.phash, 16)
    except (TypeError, ValueError):
        return None  # no usable hash: the image cannot be compared and is kept
    return HashedImage((*record.source.sort_key, record.key), record.key, phash)


def near_pairs(bucket: Iterable[HashedImage], max_distance: int) -> Iterator[tuple[str, tuple]]:
    """(dropped key, (rank, key) of a near-duplicate ranked before it) for every close pair
    in one bucket; distances computed with numpy, one row against the rest."""
    images = sorted(bucket, key=lambda h: h.rank)
    if len(images) < 2:
        return
    hashes = np.array([h.phash for h in images], dtype=np.uint64)
    for i in range(len(images) - 1):
        distances = np.bitwise_count(hashes[i + 1:] ^ hashes[i])
        for j in np.nonzero(distances <= max_distance)[0]:
            later = images[i + 1 + int(j)]
            yield later.key, (images[i].rank, images[i].key)


class _NearDuplicateJoinFn(StageFn):
    stage = STAGE

    def process_element(self, element) -> Iterator[Union[ImageRecord, Reject]]:
        _, grouped = element
        earlier = list(grouped["earlier"])
        for record in grouped["records"]:
            if not earlier:
                yield record
                continue
            (url, member, kept_key), _ = min(earlier)
            yield Reject.of(record.key, record.source, STAGE, NEAR_DUPLICATE_REASON,
                            f"near duplicate of {kept_key} ({url} :: {member})")


class NearDedup(beam.PTransform):
    """ImageRecords -> (records, near-duplicate rejects), by pHash Hamming distance.

    Candidates come from LSH on max_distance + 1 hash bands (no all-pairs); a record is
    dropped when a near-duplicate ranked before it by (shard URL, member, key) exists, so the
    choice is global and independent of arrival order, and no two kept images are near
    duplicates. The detail names the earliest such neighbour; in a chain A~B~C with A and C
    far apart, both B and C are dropped (C points to B).
    """

    def __init__(self, max_distance: int) -> None:
        super().__init__()
        self._max_distance = max_distance
        self._bands = hash_bands(max_distance)

    def expand(self, records):
        bands, max_distance = self._bands, self._max_distance
        earlier = (
            records
            | "HashedImage" >> beam.FlatMap(lambda r: [h] if (h := hashed_image(r)) else [])
            | "ByBand" >> beam.FlatMap(lambda h: [(band, h) for band in band_keys(h.phash, bands)])
            | "GroupBand" >> beam.GroupByKey()
            | "ClosePairs" >> beam.FlatMap(lambda kv: near_pairs(kv[1], max_distance))
            | "EarliestNeighbour" >> beam.CombinePerKey(min)
        )
        return join_by_key(records, "earlier", earlier, _NearDuplicateJoinFn(), "DropLater")

