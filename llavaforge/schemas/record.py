"""The record that flows through the pipeline: one per image, growing stage by stage.

Each field is defined here once; the Arrow schemas in `tables.py` and the LLaVA JSON in
`llava.py` are derived from these types.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass, field
from collections import Counter
from typing import Any, Iterable, Optional

from llavaforge.storage import read_bytes

KEY_HEX_CHARS = 32


def content_key(data: bytes) -> str:
    """The stable key of an image: a prefix of its sha256 in hex.

    Hex only, so it is safe as a file name and as a WebDataset key (no dots, no slashes).
    128 bits make collisions between distinct images negligible at any dataset size.
    """
    return key_of_sha256(hashlib.sha256(data).hexdigest())


def key_of_sha256(sha256_hex: str) -> str:
    """The key of an image whose sha256 (hex) is already known."""
    return sha256_hex[:KEY_HEX_CHARS]


def source_key(url: str, member: str) -> str:
    """The key of an input that has no image bytes to hash (e.g. a tar member without an image)."""
    return hashlib.sha256(f"{url}\x00{member}".encode()).hexdigest()[:KEY_HEX_CHARS]


@dataclass
class Source:
    """Where an image came from. `member` is a tar member name, a Parquet row or a file path,
    kept only as text: it is never used to build an output path."""

    url: str
    member: str
    texts: list[str] = field(default_factory=list)
    metadata: Optional[str] = None  # a sibling JSON member/column, verbatim

    @property
    def sort_key(self) -> tuple[str, str]:
        return (self.url, self.member)


@dataclass
class ImageInfo:
    """An image's bytes and what decode measured of them.

    Once `staged` names a copy of the bytes (a run stages them right after decode), the record
    crosses stage boundaries without them: pickling leaves `data` out, and the first read of
    `data` on the other side loads it from `staged`. Stages that never look at pixels (dedup,
    the LLM, checks) then never move image bytes, and a runner that buffers whole stages holds
    keys and text rather than images."""

    data: bytes  # the bytes written to outputs (original when kept, else re-encoded)
    format: str  # lower-case file extension of `data`: jpg, png, webp
    width: int
    height: int
    sha256: str  # of `data`, the bytes written
    phash: str  # 64-bit perceptual hash, hex
    source_sha256: str = ""  # of the input bytes as read (the key and exact dedup come from it)
    staged: str = ""  # URL of a copy of `data`, or "" when the record carries its bytes

    def __getstate__(self) -> dict[str, Any]:
        if not self.staged:
            return self.__dict__
        return {name: value for name, value in self.__dict__.items() if name != "data"}

    def unload(self) -> None:
        """Let go of bytes loaded from `staged` (the next read of `data` loads them again)."""
        if self.staged:
            self.__dict__.pop("data", None)

    def __getattr__(self, name: str) -> Any:
        # Called only for attributes the instance lacks: `data` of a staged image after unpickling.
        if name == "data" and self.__dict__.get("staged"):
            try:
                self.data = read_bytes(self.staged)
            except FileNotFoundError as e:
                raise FileNotFoundError(f"staged bytes of this image are gone: {self.staged}") from e
            return self.data
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")


SOURCE_MODEL = "source"  # the `Caption.model` of text that came with the image (untrusted)


@dataclass
class Caption:
    text: str
    model: str  # model id, or SOURCE_MODEL for text that came with the image


@dataclass
class DetectedObject:
    label: str
    score: float
    box: list[float]  # [x1, y1, x2, y2], normalised to 0..1 of the stored image
    model: str


@dataclass
class Tag:
    label: str
    score: float
    model: str


@dataclass
class OcrText:
    text: str
    score: float
    box: list[float]  # [x1, y1, x2, y2], normalised to 0..1 of the stored image
    model: str


@dataclass
class Annotations:
    captions: list[Caption] = field(default_factory=list)
    objects: list[DetectedObject] = field(default_factory=list)
    tags: list[Tag] = field(default_factory=list)
    ocr: list[OcrText] = field(default_factory=list)


@dataclass
class Turn:
    role: str  # "human" | "gpt"; written as LLaVA's "from"
    value: str


@dataclass
class Conversation:
    task: str  # "conversation" | "detail" | "reasoning" | a user-defined task type
    turns: list[Turn]
    backend: str = ""
    model: str = ""
    prompt_version: str = ""
    tokens_in: int = 0
    tokens_out: int = 0
    seed: int = 0
    flags: list[str] = field(default_factory=list)  # checks with severity "flag" that fired


@dataclass
class Provenance:
    version: str
    recipe_hash: str
    run_id: str


@dataclass
class ImageRecord:
    key: str
    source: Source
    image: ImageInfo
    annotations: Annotations = field(default_factory=Annotations)
    conversations: list[Conversation] = field(default_factory=list)
    provenance: Optional[Provenance] = None
    # Tasks that failed for a reason a later run may not meet (LLM endpoint down, model error):
    # if no conversation survives, the image's reject is retryable.
    retryable_failures: int = 0

    def replace(self, **changes) -> "ImageRecord":
        return dataclasses.replace(self, **changes)


@dataclass
class RawSample:
    """An input as a reader found it, before any validation."""

    source: Source
    data: bytes
    extension: str  # of the member/file the bytes came from, lower case, no dot


@dataclass
class Reject:
    """A record that did not make it, with the stage and reason.

    `task` is None when the whole image is rejected; it names the task type when only one
    generated sample of an image is rejected (the image itself may still be written).
    `retryable`: the cause may be gone next time (an endpoint or model error, a read error of
    the storage); a nightly run retries such images, the others are final.
    """

    key: str
    source_url: str
    source_member: str
    stage: str
    reason: str
    detail: str = ""
    task: Optional[str] = None
    retryable: bool = False
    # A sample held back for review (a flag-severity finding): the image's record carrying only
    # that conversation, written to review/ beside the rejects row. Never part of the rejects table.
    review: Optional["ImageRecord"] = None

    @classmethod
    def of(cls, key: str, source: Source, stage: str, reason: str, detail: str = "",
           task: Optional[str] = None, retryable: bool = False, review: Optional["ImageRecord"] = None) -> "Reject":
        return cls(key=key, source_url=source.url, source_member=source.member, stage=stage,
                   reason=reason, detail=detail[:2000], task=task, retryable=retryable, review=review)


DUPLICATE_REASON = "duplicate"
NEAR_DUPLICATE_REASON = "near_duplicate"
DUPLICATE_REASONS = (DUPLICATE_REASON, NEAR_DUPLICATE_REASON)
REVIEW_STAGE = "review"  # the stage of samples held back for review
# Stage labels (StageFn stage or progress_label, writers) in flow order, for every per-stage table.
FLOW_ORDER = ("read", "decode", "dedup", "published", "annotate_captioner", "annotate_detector", "annotate_tagger",
              "annotate_ocr", "annotate_dense_captioner", "annotate", "synthesize", "llm", "synthesize_assemble",
              "check", "verify", "question_dedup", "review", "write_image", "write_review", "write_reject")


def in_flow_order(labels) -> list[str]:
    """Labels in flow order; unknown ones after, sorted."""
    labels = list(labels)
    return [s for s in FLOW_ORDER if s in labels] + sorted(s for s in labels if s not in FLOW_ORDER)


def reject_counts(rejects: Iterable[Reject]) -> dict[str, Any]:
    """The accounting of a set of rejects: image rejects, duplicates, sample rejects, and
    counts per stage and reason. Shared by the writer and `verify`."""
    by_reason: dict[str, Counter] = {}
    images = duplicates = samples = 0
    for r in rejects:
        by_reason.setdefault(r.stage, Counter())[r.reason] += 1
        if r.task is not None:
            samples += 1
        elif r.reason in DUPLICATE_REASONS:
            duplicates += 1
        else:
            images += 1
    return {"images_rejected": images, "duplicates": duplicates, "sample_rejects": samples,
            "rejects": {stage: dict(c) for stage, c in by_reason.items()}}
