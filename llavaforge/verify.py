"""`llavaforge verify PREFIX`: recompute a run's accounting from its files alone."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import fsspec
import pyarrow.parquet as pq
from webdataset.tariterators import base_plus_ext, tar_file_iterator

from llavaforge.schemas.llava import llava_record_errors
from llavaforge.schemas.record import Reject
from llavaforge.transforms.write import STATS_FILE, join, reject_counts

_MAX_LISTED = 10


@dataclass
class VerifyReport:
    counts: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def problem(self, text: str) -> None:
        self.problems.append(text)


def _files(fs, root: str, folder: str, suffix: str) -> list[str]:
    return sorted(fs.glob(join(root, folder, f"*{suffix}")))


def _check_samples(fs, root: str, report: VerifyReport) -> set[str]:
    keys: set[str] = set()
    ids: Counter = Counter()
    shard_of_key: dict[str, str] = {}
    rows = 0
    for path in _files(fs, root, "samples", ".parquet"):
        with fs.open(path, "rb") as f:
            table = pq.read_table(f, columns=["id", "key", "image", "conversations"])
        for row in table.to_pylist():
            rows += 1
            ids[row["id"]] += 1
            if shard_of_key.setdefault(row["key"], path) != path:
                report.problem(f"key {row['key']} written in two shards: {shard_of_key[row['key']]}, {path}")
            keys.add(row["key"])
            for err in llava_record_errors({"id": row["id"], "image": row["image"],
                                            "conversations": row["conversations"]}):
                report.problem(f"samples row {row['id']}: {err}")
    for sample_id, n in ids.items():
        if n > 1:
            report.problem(f"sample id {sample_id} appears {n} times")
    report.counts["samples_rows"] = rows
    return keys


def _check_wds(fs, root: str, report: VerifyReport) -> set[str]:
    keys: set[str] = set()
    for path in _files(fs, root, "wds", ".tar"):
        members: dict[str, set[str]] = {}
        with fs.open(path, "rb") as f:
            for item in tar_file_iterator(f):
                key, ext = base_plus_ext(item["fname"])
                members.setdefault(key, set()).add(ext)
                if ext == "json":
                    for entry in json.loads(item["data"]):
                        for err in llava_record_errors(entry):
                            report.problem(f"{path} {key}.json: {err}")
        for key, exts in members.items():
            if key in keys:
                report.problem(f"wds key {key} written twice")
            keys.add(key)
            if "json" not in exts or len(exts) != 2:
                report.problem(f"{path}: sample {key} has members {sorted(exts)}, expected image + json")
    return keys


def _check_llava(fs, root: str, report: VerifyReport) -> set[str]:
    keys: set[str] = set()
    images = {p.rsplit("/", 1)[-1] for p in _files(fs, root, "images", "")}
    records = 0
    for path in _files(fs, root, "llava", ".json"):
        with fs.open(path, "r") as f:
            data = json.load(f)
        if not isinstance(data, list):
            report.problem(f"{path} is not a JSON list")
            continue
        for item in data:
            records += 1
            for err in llava_record_errors(item):
                report.problem(f"{path} record {item.get('id') if isinstance(item, dict) else item!r}: {err}")
            image = item.get("image") if isinstance(item, dict) else None
            if isinstance(image, str):
                if image not in images:
                    report.problem(f"{path}: image {image} missing from images/")
                keys.add(image.rsplit(".", 1)[0])
    report.counts["llava_records"] = records
    if len(images) != len(keys):
        report.problem(f"images/ holds {len(images)} files but LLaVA records name {len(keys)}")
    return keys


def _read_rejects(fs, root: str) -> list[Reject]:
    rejects = []
    for path in _files(fs, root, "rejects", ".parquet"):
        with fs.open(path, "rb") as f:
            rejects.extend(Reject(**row) for row in pq.read_table(f).to_pylist())
    return rejects


def verify(prefix: str) -> VerifyReport:
    report = VerifyReport()
    fs, root = fsspec.core.url_to_fs(prefix)
    stats_path = join(root, STATS_FILE)
    if not fs.exists(stats_path):
        report.problem(f"{prefix}: no {STATS_FILE}: the run did not complete")
        return report
    with fs.open(stats_path, "r") as f:
        stats = json.load(f)
    sample_keys = _check_samples(fs, root, report)
    wds_keys = _check_wds(fs, root, report)
    llava_keys = _check_llava(fs, root, report)
    for name, keys in (("wds", wds_keys), ("llava", llava_keys)):
        if keys != sample_keys:
            only = sorted(keys ^ sample_keys)[:_MAX_LISTED]
            report.problem(f"{name} keys differ from samples keys ({len(keys)} vs {len(sample_keys)}; e.g. {only})")
    counts = reject_counts(_read_rejects(fs, root))
    written = len(sample_keys)
    report.counts.update({"inputs": stats.get("inputs"), "images_written": written, **counts})
    total = written + counts["images_rejected"] + counts["duplicates"]
    if stats.get("inputs") != total:
        report.problem(f"inputs {stats.get('inputs')} != images written {written} + rejected "
                       f"{counts['images_rejected']} + duplicates {counts['duplicates']} = {total}")
    for name, value in (("images_written", written), ("images_rejected", counts["images_rejected"]),
                        ("duplicates", counts["duplicates"]), ("sample_rejects", counts["sample_rejects"]),
                        ("samples_written", report.counts["samples_rows"])):
        if stats.get(name) != value:
            report.problem(f"stats.json {name} = {stats.get(name)} but the files hold {value}")
    return report
