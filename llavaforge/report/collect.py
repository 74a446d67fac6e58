"""What a report shows, read from one run folder through fsspec.

The accounting comes from `stats.json` and `metrics.json` as the run wrote them. Every other
figure is computed over all rows by streaming the Parquet files one at a time, reading only
the columns it needs, so memory holds one shard plus the aggregates. The galleries show a
deterministic sample: the images (and, per reason, the rejects) whose keys hash lowest, so the
same run always gives the same page and a sample is spread evenly over the whole output.
"""

from __future__ import annotations

import hashlib
import heapq
import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any, Generic, Optional, TypeVar

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from llavaforge.schemas.llava import GPT, IMAGE_TOKEN
from llavaforge.schemas.layout import IMAGES_DIR, METRICS_FILE, REJECTS_DIR, SAMPLES_DIR, STATS_FILE
from llavaforge.storage import join

# Approximate token count without a tokenizer (the run's LLM tokenizer may not be at hand):
# runs of letters/digits, and each other non-space character on its own. RE2 syntax,
# evaluated by Arrow in C++. SmolLM2's BPE tokenizer counts 1.07x this on the English turns of
# tests/data/quality_eval*.jsonl and the prompt library's examples.
TOKEN_PATTERN = r"[\pL\pN_]+|[^\pL\pN_\s]"
TOKEN_METHOD = (f"approximate: words plus punctuation marks (regex {TOKEN_PATTERN}), counted without a "
                "tokenizer; a BPE tokenizer counts somewhat more (SmolLM2's: 1.07x on English chat text)")

SAMPLE_COLUMNS = [
    "id", "image.path", "conversations", "key", "task", "image_format", "width", "height",
    "source_url", "source_member", "source_texts", "captions", "objects", "tags", "ocr",
    "backend", "model", "prompt_version", "tokens_in", "tokens_out", "flags",
]
# Per image, not per sample: the annotations every sample row of an image repeats.
ANNOTATION_COLUMNS = ("captions", "objects", "tags", "ocr", "source_texts")
NO_TASK = "(none)"

T = TypeVar("T")


class ReportError(Exception):
    """The folder cannot be reported on (not a run folder, or the run did not complete)."""


def key_rank(*parts: Optional[str]) -> int:
    """A stable pseudo-random rank for sampling: 64 bits of a keyed hash of the parts."""
    text = "\x00".join(p or "" for p in parts)
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8, person=b"lf-report").digest(), "big")


class LowestRanked(Generic[T]):
    """The `size` items with the lowest rank offered so far (a bounded max-heap)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._heap: list[tuple[int, str, T]] = []  # (-rank, tie-break, item)

    def would_keep(self, rank: int) -> bool:
        return self.size > 0 and (len(self._heap) < self.size or rank < -self._heap[0][0])

    def offer(self, rank: int, tie: str, item: T) -> None:
        if not self.would_keep(rank):
            return
        entry = (-rank, tie, item)
        if len(self._heap) < self.size:
            heapq.heappush(self._heap, entry)
        else:
            heapq.heapreplace(self._heap, entry)

    def items(self) -> list[T]:
        """Kept items, lowest rank first."""
        return [item for _, _, item in sorted(self._heap, key=lambda e: (-e[0], e[1]))]


@dataclass
class GalleryImage:
    """One written image with all its sample rows (one per task)."""

    key: str
    rows: list[dict[str, Any]]
    thumbnail: Optional[str] = None  # data URI, set by the renderer
    thumbnail_error: str = ""

    @property
    def first(self) -> dict[str, Any]:
        return self.rows[0]


@dataclass
class RejectGroup:
    stage: str
    reason: str
    count: int
    examples: list[dict[str, Any]]


@dataclass
class RunData:
    """Everything the page shows. Counts from the files sit beside the accounting from
    stats.json so the page can say when the two disagree."""

    run_dir: str
    stats: dict[str, Any]
    metrics: dict[str, Any]
    images: int = 0  # distinct keys in samples/
    samples: int = 0  # rows in samples/
    reject_rows: int = 0
    tasks: Counter = field(default_factory=Counter)  # samples per task
    rejected_tasks: Counter = field(default_factory=Counter)  # sample-level rejects per task
    flags: Counter = field(default_factory=Counter)
    flagged_samples: int = 0
    question_tokens: dict[str, np.ndarray] = field(default_factory=dict)  # per task, one value per human turn
    answer_tokens: dict[str, np.ndarray] = field(default_factory=dict)  # per task, one value per gpt turn
    rounds: dict[str, np.ndarray] = field(default_factory=dict)  # per task, question-answer pairs per sample
    widths: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    heights: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    formats: Counter = field(default_factory=Counter)
    objects: Counter = field(default_factory=Counter)  # detected instances per label
    tags: Counter = field(default_factory=Counter)  # images per tag
    coverage: Counter = field(default_factory=Counter)  # images with at least one of each annotation
    first_questions: Counter = field(default_factory=Counter)  # (task, question) -> samples
    reject_counts: Counter = field(default_factory=Counter)  # (stage, reason) -> rows
    gallery: list[GalleryImage] = field(default_factory=list)
    reject_groups: list[RejectGroup] = field(default_factory=list)


def _read_json(fs, path: str) -> Optional[dict[str, Any]]:
    if not fs.exists(path):
        return None
    with fs.open(path, "r") as f:
        return json.load(f)


def _parquet_files(fs, root: str, folder: str) -> list[str]:
    return sorted(fs.glob(join(root, folder, "*.parquet")))


def _read_table(fs, path: str, columns: Optional[list[str]] = None) -> pa.Table:
    """The columns asked for; a nested field (`image.path`: the image's file name, without its
    embedded bytes) comes back under its top-level name (`image`)."""
    with fs.open(path, "rb") as f:
        table = pq.read_table(f, columns=columns)
    if columns:
        table = table.rename_columns([name.split(".", 1)[0] for name in columns])
    return table


def _value_counts(array: pa.Array) -> Counter:
    counts = Counter()
    for item in pc.value_counts(array).to_pylist():
        if item["values"] is not None:
            counts[item["values"]] += item["counts"]
    return counts


def _concat(parts: dict[str, list[np.ndarray]]) -> dict[str, np.ndarray]:
    return {task: np.concatenate(arrays) for task, arrays in sorted(parts.items())}


class _SampleAggregates:
    """Figures over every samples row, added one table (shard) at a time, vectorised in Arrow."""

    def __init__(self, data: RunData) -> None:
        self.data = data
        self.questions: dict[str, list[np.ndarray]] = defaultdict(list)
        self.answers: dict[str, list[np.ndarray]] = defaultdict(list)
        self.rounds: dict[str, list[np.ndarray]] = defaultdict(list)
        self.widths: list[np.ndarray] = []
        self.heights: list[np.ndarray] = []

    def add(self, table: pa.Table) -> None:
        self.data.samples += table.num_rows
        tasks = table["task"].to_pylist()
        self.data.tasks.update(t or NO_TASK for t in tasks)
        flags = table["flags"].combine_chunks()
        self.data.flags += _value_counts(pc.list_flatten(flags))
        self.data.flagged_samples += int(pc.sum(pc.greater(pc.list_value_length(flags), 0)).as_py() or 0)
        self._add_conversations(table["conversations"].combine_chunks(), tasks)
        self._add_images(first_row_per_key(table))

    def _add_conversations(self, conversations: pa.ListArray, tasks: list[Optional[str]]) -> None:
        lengths = pc.fill_null(pc.list_value_length(conversations), 0).to_numpy()
        turns = pc.list_flatten(conversations)
        parents = pc.list_parent_indices(conversations).to_numpy()
        text = pc.replace_substring(pc.struct_field(turns, "value"), IMAGE_TOKEN, "")
        tokens = pc.fill_null(pc.count_substring_regex(text, TOKEN_PATTERN), 0).to_numpy()
        from_gpt = pc.fill_null(pc.equal(pc.struct_field(turns, "from"), GPT), False).to_numpy(zero_copy_only=False)
        names = sorted({t for t in tasks if t is not None})
        codes = np.array([names.index(t) if t is not None else -1 for t in tasks], dtype=np.int64)
        turn_codes = codes[parents]
        for code, name in enumerate(names):
            of_task = turn_codes == code
            self.answers[name].append(tokens[of_task & from_gpt])
            self.questions[name].append(tokens[of_task & ~from_gpt])
            self.rounds[name].append(lengths[codes == code] // 2)
        has_turns = lengths > 0
        if has_turns.any():
            first = pc.struct_field(pc.list_element(conversations.filter(pa.array(has_turns)), 0), "value")
            first = pc.replace_substring_regex(
                pc.utf8_trim_whitespace(pc.replace_substring(first, IMAGE_TOKEN, "")), r"\s+", " ")
            row_tasks = [t for t, keep in zip(tasks, has_turns) if keep]
            self.data.first_questions.update(zip(row_tasks, first.to_pylist()))

    def _add_images(self, images: pa.Table) -> None:
        self.data.images += images.num_rows
        self.widths.append(images["width"].to_numpy())
        self.heights.append(images["height"].to_numpy())
        self.data.formats += _value_counts(images["image_format"].combine_chunks())
        self.data.objects += _value_counts(
            pc.struct_field(pc.list_flatten(images["objects"].combine_chunks()), "label"))
        self.data.tags += _value_counts(
            pc.struct_field(pc.list_flatten(images["tags"].combine_chunks()), "label"))
        for column in ANNOTATION_COLUMNS:
            self.data.coverage[column] += int(pc.sum(pc.greater(pc.list_value_length(images[column]), 0)).as_py() or 0)

    def finish(self) -> None:
        self.data.question_tokens = _concat(self.questions)
        self.data.answer_tokens = _concat(self.answers)
        self.data.rounds = _concat(self.rounds)
        self.data.widths = np.concatenate(self.widths) if self.widths else np.zeros(0, np.int64)
        self.data.heights = np.concatenate(self.heights) if self.heights else np.zeros(0, np.int64)


def first_row_per_key(table: pa.Table) -> pa.Table:
    """One row per image key (its first), whatever order the rows are in."""
    rows = pa.table({"key": table["key"], "row": pa.array(np.arange(table.num_rows, dtype=np.int64))})
    first = rows.group_by("key", use_threads=False).aggregate([("row", "min")])["row_min"]
    return table.take(first)


def _sample_gallery(table: pa.Table, chosen: LowestRanked[GalleryImage]) -> None:
    """Offer this shard's images to the gallery sample; only candidates become Python rows."""
    ranked = sorted((key_rank(k), k) for k in pc.unique(table["key"].combine_chunks()).to_pylist())
    candidates = {k: r for r, k in ranked[:chosen.size] if chosen.would_keep(r)}
    if not candidates:
        return
    rows = table.filter(pc.is_in(table["key"], pa.array(list(candidates)))).to_pylist()
    by_key: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        by_key[row["key"]].append(row)
    for key, key_rows in by_key.items():
        key_rows.sort(key=lambda r: r["task"] or "")
        chosen.offer(candidates[key], key, GalleryImage(key=key, rows=key_rows))


def _collect_rejects(fs, root: str, data: RunData, examples_per_reason: int, gallery_keys: set[str]) -> None:
    groups: dict[tuple[str, str], LowestRanked[dict[str, Any]]] = {}
    for path in _parquet_files(fs, root, REJECTS_DIR):
        table = _read_table(fs, path)
        data.reject_rows += table.num_rows
        columns = {name: table[name].to_pylist() for name in table.column_names}
        for i, (stage, reason, key, task) in enumerate(
                zip(columns["stage"], columns["reason"], columns["key"], columns["task"])):
            data.reject_counts[(stage, reason)] += 1
            if task is not None:
                data.rejected_tasks[task] += 1
            group = groups.setdefault((stage, reason), LowestRanked(examples_per_reason))
            rank = key_rank(key, task, stage, reason)
            if group.would_keep(rank):
                row = {name: values[i] for name, values in columns.items()}
                row["in_gallery"] = key in gallery_keys
                group.offer(rank, f"{key}\x00{task or ''}", row)
    data.reject_groups = [
        RejectGroup(stage=stage, reason=reason, count=data.reject_counts[(stage, reason)], examples=group.items())
        for (stage, reason), group in sorted(groups.items(), key=lambda g: (-data.reject_counts[g[0]], g[0]))
    ]


def collect(run_dir: str, gallery_images: int = 200, examples_per_reason: int = 10) -> RunData:
    """Read one run folder (any fsspec URL): stats, aggregates over every row, and the samples
    the galleries show."""
    fs, root = fsspec.core.url_to_fs(run_dir)
    stats = _read_json(fs, join(root, STATS_FILE))
    if stats is None:
        what = "the run did not complete" if fs.exists(join(root, SAMPLES_DIR)) else "not a run folder"
        raise ReportError(f"{run_dir}: no {STATS_FILE} ({what})")
    metrics = _read_json(fs, join(root, METRICS_FILE)) or {}
    if "stages" in metrics and "stages" not in stats:  # recorded beside stats.json by a driver that waited
        stats = {**stats, "stages": metrics["stages"]}
    data = RunData(run_dir=run_dir, stats=stats, metrics=metrics.get("models", metrics) or stats.get("models") or {})
    aggregates = _SampleAggregates(data)
    chosen: LowestRanked[GalleryImage] = LowestRanked(gallery_images)
    for path in _parquet_files(fs, root, SAMPLES_DIR):
        table = _read_table(fs, path, SAMPLE_COLUMNS)
        aggregates.add(table)
        _sample_gallery(table, chosen)
    aggregates.finish()
    data.gallery = chosen.items()
    _collect_rejects(fs, root, data, examples_per_reason, {image.key for image in data.gallery})
    return data
