"""Write: records and rejects to the outputs of one run folder, `stats.json` last.

Shards are assigned by key hash (so a record always lands in the same shard for the same
shard count) and written whole by one worker with fixed names; a retried bundle rewrites
identical files, and a run folder is complete only once `stats.json` exists (written in one
piece). Publishing a complete run folder is the job layer's step, not this stage's.

- samples/NNNNN.parquet: one row per sample, the image embedded as `{bytes, path}`
  (Hugging Face's image layout);
- wds/<ext>/NNNNN.tar: WebDataset shards, one stream per image extension, so every shard of a
  stream has the same member types (Hugging Face's webdataset loader and `to_tuple("jpg",
  "json")` need that);
- llava/NNNNN.json + images/: LLaVA's training format, records only for images with
  conversations (an empty `conversations` list crashes LLaVA's training code); llava.json:
  all of them in one file, and dataset_info.json for LLaMA-Factory;
- review/NNNNN.parquet: samples held back because a check flagged them (samples' layout);
- rejects/NNNNN.parquet: every input, image or sample that did not make it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import time
from collections import Counter
from typing import Any, Callable, Iterable, Iterator

import apache_beam as beam
import fsspec
import pyarrow.parquet as pq
from webdataset import TarWriter

from llavaforge import progress
from llavaforge.config.sections import WriteConfig
from llavaforge.crashpoint import stall_at
from llavaforge.schemas.layout import (IMAGES_DIR, LLAMA_FACTORY_INFO, LLAVA_DIR, LLAVA_FILE, REJECTS_DIR,
                                       REVIEW_DIR, SAMPLES_DIR, STATS_FILE, WDS_DIR, image_name, shard_path,
                                       wds_shard_path)
from llavaforge.schemas.llava import llava_records
from llavaforge.schemas.record import ImageRecord, Reject, reject_counts
from llavaforge.schemas.tables import REJECTS_SCHEMA, SAMPLES_SCHEMA, reject_row, sample_rows, to_table
from llavaforge.storage import join, json_bytes, write_atomic

log = logging.getLogger(__name__)

# Fixed member mtime makes a shard's bytes depend only on its records.
_TAR_MTIME = 0.0


def shard_count(total: int, per_shard: int) -> int:
    return max(1, math.ceil(total / per_shard))


def shard_of(key: str, shards: int) -> int:
    return int(key[:8], 16) % shards


# Samples tables embed their images: a writer holds one row group's images at a time (100 is
# also the row group Hugging Face's datasets writes for image data).
IMAGES_PER_ROW_GROUP = 100


def write_samples_table(url: str, records: list[ImageRecord],
                        each_group: Callable[[list[ImageRecord]], None] = lambda group: None) -> int:
    """The records' sample rows into one Parquet file, IMAGES_PER_ROW_GROUP images a row group;
    `each_group` gets each group once it is written, before its staged images are let go.
    Returns the number of rows."""
    rows = 0
    with fsspec.open(url, "wb") as f, pq.ParquetWriter(f, SAMPLES_SCHEMA) as table:
        for start in range(0, len(records), IMAGES_PER_ROW_GROUP):
            group = records[start:start + IMAGES_PER_ROW_GROUP]
            group_rows = [row for r in group for row in sample_rows(r)]
            table.write_table(to_table(group_rows, SAMPLES_SCHEMA))
            rows += len(group_rows)
            each_group(group)
            for record in group:
                record.image.unload()
    return rows


def write_image_shard(run_dir: str, index: int, records: list[ImageRecord]) -> dict[str, Any]:
    """One pass over the shard: each image is read once (from staging) and written to the
    samples table, its WebDataset stream and images/ before the next row group is read."""
    records = sorted(records, key=lambda r: r.key)
    llava: list[dict[str, Any]] = []  # the shard's LLaVA records, in key order, for llava/
    with contextlib.ExitStack() as files:
        tars = {image_format: TarWriter(files.enter_context(fsspec.open(wds_shard_path(run_dir, image_format, index), "wb")),
                                        encoder=False, mtime=_TAR_MTIME)
                for image_format in sorted({r.image.format for r in records})}

        def write_images(group: list[ImageRecord]) -> None:
            for record in group:
                data = record.image.data
                entries = llava_records(record)
                llava.extend(entries)
                tars[record.image.format].write({
                    "__key__": record.key, record.image.format: data,
                    "json": json.dumps(entries, ensure_ascii=False).encode()})
                with fsspec.open(join(run_dir, IMAGES_DIR, image_name(record.key, record.image.format)), "wb") as f:
                    f.write(data)

        samples = write_samples_table(shard_path(run_dir, SAMPLES_DIR, index, "parquet"), records, write_images)
        for tar in tars.values():
            tar.close()
    if llava:
        with fsspec.open(shard_path(run_dir, LLAVA_DIR, index, "json"), "w", encoding="utf-8") as f:
            json.dump(llava, f, ensure_ascii=False, indent=1)
    stall_at("write-shard")
    tasks = Counter(c.task for r in records for c in r.conversations)
    return {"shard": index, "images": len(records), "samples": samples, "llava_records": len(llava),
            "tasks": dict(tasks)}


def write_review_shard(run_dir: str, index: int, rejects: list[Reject]) -> dict[str, Any]:
    """The samples held for review (rejects carrying them), in the samples table's layout."""
    records = sorted((r.review for r in rejects), key=lambda r: (r.key, r.conversations[0].task))
    return {"shard": index, "review_samples": write_samples_table(shard_path(run_dir, REVIEW_DIR, index, "parquet"), records)}


def write_llava_file(run_dir: str, shards: Iterable[int]) -> int:
    """llava.json: the llava/ shards' records in one JSON list, written shard by shard (the
    whole list is never in memory), then LLaMA-Factory's dataset_info.json beside it. Neither
    is written when the run has no LLaVA record (a curation-only run)."""
    fs, root = fsspec.core.url_to_fs(run_dir)
    shards = [i for i in sorted(shards) if fs.exists(shard_path(root, LLAVA_DIR, i, "json"))]
    if not shards:
        return 0
    records = 0
    with fs.open(join(root, LLAVA_FILE), "w", encoding="utf-8") as out:
        out.write("[")
        for index in shards:
            with fs.open(shard_path(root, LLAVA_DIR, index, "json"), "r", encoding="utf-8") as f:
                for entry in json.load(f):
                    out.write(("," if records else "") + "\n" + json.dumps(entry, ensure_ascii=False))
                    records += 1
        out.write("\n]\n")
    with fs.open(join(root, LLAMA_FACTORY_INFO), "w", encoding="utf-8") as f:
        json.dump(llama_factory_info(), f, indent=2)
    return records


def llama_factory_info() -> dict[str, Any]:
    """LLaMA-Factory's dataset description of llava.json: ShareGPT formatting, the `image` field
    as the images column (paths relative to `--media_dir RUN_DIR/images`)."""
    return {"llavaforge": {
        "file_name": LLAVA_FILE, "formatting": "sharegpt",
        "columns": {"messages": "conversations", "images": "image"},
        "tags": {"role_tag": "from", "content_tag": "value", "user_tag": "human", "assistant_tag": "gpt"}}}


def write_reject_shard(run_dir: str, index: int, rejects: list[Reject]) -> dict[str, Any]:
    rejects = sorted(rejects, key=lambda r: (r.key, r.stage, r.reason, r.task or "", r.source_url, r.source_member))
    with fsspec.open(shard_path(run_dir, REJECTS_DIR, index, "parquet"), "wb") as f:
        pq.write_table(to_table([reject_row(r) for r in rejects], REJECTS_SCHEMA), f)
    return {"shard": index, "rows": len(rejects), **reject_counts(rejects)}


def merge_counts(summaries: list[dict[str, Any]]) -> dict[str, Any]:
    total: dict[str, Any] = {}
    for s in summaries:
        for k, v in s.items():
            if k == "shard":
                continue
            if isinstance(v, dict):
                merged = merge_counts([total.get(k, {}), v])
                total[k] = merged
            else:
                total[k] = total.get(k, 0) + v
    return total


def build_stats(inputs: int, image_summaries: list[dict], reject_summaries: list[dict],
                run_info: dict[str, Any]) -> dict[str, Any]:
    images = merge_counts(image_summaries)
    rejects = merge_counts(reject_summaries)
    written = images.get("images", 0)
    rejected = rejects.get("images_rejected", 0)
    duplicates = rejects.get("duplicates", 0)
    return {
        **run_info,
        "inputs": inputs,
        "images_written": written,
        "samples_written": images.get("samples", 0),
        "tasks": images.get("tasks", {}),
        "images_rejected": rejected,
        "duplicates": duplicates,
        "sample_rejects": rejects.get("sample_rejects", 0),
        "balanced": inputs == written + rejected + duplicates,
        "rejects": rejects.get("rejects", {}),
        "shards": {"samples": len(image_summaries), "rejects": len(reject_summaries)},
    }


class _WriteShardFn(beam.DoFn):
    def __init__(self, run_dir: str, writer) -> None:
        super().__init__()
        self.run_dir = run_dir
        self.writer = writer
        self._progress = progress.StageProgress()

    def process(self, element: tuple[int, Iterable]) -> Iterator[dict[str, Any]]:
        index, items = element
        start = time.perf_counter()
        items = list(items)
        summary = self.writer(self.run_dir, index, items)
        self._progress.add(f"write_{self.writer.__name__.split('_')[1]}", **{
            "in": len(items), "out": len(items), "seconds": time.perf_counter() - start})
        self._progress.flush()
        log.info("wrote %s shard %05d: %s", self.writer.__name__, index,
                 {k: v for k, v in summary.items() if isinstance(v, int) and k != "shard"})
        yield summary


class _WriteStatsFn(beam.DoFn):
    """Last, once every shard is written: llava.json (when asked for), then stats.json."""

    def __init__(self, run_dir: str, config: WriteConfig, run_info: dict[str, Any]) -> None:
        super().__init__()
        self.run_dir = run_dir
        self.config = config
        self.run_info = run_info

    def process(self, inputs: int, image_summaries, reject_summaries, review_summaries) -> Iterator[dict[str, Any]]:
        image_summaries = list(image_summaries)
        stats = build_stats(inputs, image_summaries, list(reject_summaries), self.run_info)
        stats["review_samples"] = sum(s["review_samples"] for s in review_summaries)
        if self.config.llava_single_file:
            stats["llava_file_records"] = write_llava_file(self.run_dir, [s["shard"] for s in image_summaries])
        stats["finished_at"] = time.time()
        write_atomic(join(self.run_dir, STATS_FILE), json_bytes(stats))
        yield stats


class _ShardAndWrite(beam.PTransform):
    def __init__(self, run_dir: str, per_shard: int, writer) -> None:
        super().__init__()
        self.run_dir = run_dir
        self.per_shard = per_shard
        self.writer = writer

    def expand(self, items):
        total = items | "Count" >> beam.combiners.Count.Globally()
        return (
            items
            | "AssignShard" >> beam.Map(
                lambda item, n: (shard_of(item.key, shard_count(n, self.per_shard)), item),
                n=beam.pvalue.AsSingleton(total))
            | "GroupShard" >> beam.GroupByKey()
            | "WriteShard" >> beam.ParDo(_WriteShardFn(self.run_dir, self.writer))
        )


class WriteOutputs(beam.PTransform):
    """{"records", "rejects", "inputs"} -> the run's stats (a one-element PCollection),
    after writing samples/, wds/, llava/ + images/, review/, rejects/, llava.json and, last,
    stats.json."""

    def __init__(self, run_dir: str, config: WriteConfig, run_info: dict[str, Any]) -> None:
        super().__init__()
        self.run_dir = run_dir
        self.config = config
        self.run_info = run_info

    def expand(self, pcolls):
        image_summaries = pcolls["records"] | "Images" >> _ShardAndWrite(
            self.run_dir, self.config.images_per_shard, write_image_shard)
        reject_summaries = pcolls["rejects"] | "Rejects" >> _ShardAndWrite(
            self.run_dir, self.config.rejects_per_shard, write_reject_shard)
        review_summaries = (
            pcolls["rejects"]
            | "HeldForReview" >> beam.Filter(lambda r: r.review is not None)
            | "Review" >> _ShardAndWrite(self.run_dir, self.config.images_per_shard, write_review_shard))
        return pcolls["inputs"] | "WriteStats" >> beam.ParDo(
            _WriteStatsFn(self.run_dir, self.config, self.run_info), beam.pvalue.AsList(image_summaries),
            beam.pvalue.AsList(reject_summaries), beam.pvalue.AsList(review_summaries))
