"""`llavaforge verify PREFIX`: recompute a run's accounting from its files alone.

Given a prefix, it verifies what the ledger publishes (the latest run folder of a `run`
prefix, every run folder of a `nightly` prefix) and names the run folders that are not
published (a crashed or running job); given a run folder, that folder.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterator, TextIO

import fsspec
import pyarrow.parquet as pq
import tarfile

from llavaforge.jobs.ledger import Ledger
from llavaforge.jobs.prefix import OutputPrefix
from llavaforge.schemas.layout import (IMAGES_DIR, LLAVA_DIR, LLAVA_FILE, REJECTS_DIR, REVIEW_DIR, SAMPLES_DIR,
                                       STATS_FILE, WDS_DIR)
from llavaforge.schemas.llava import llava_record_errors
from llavaforge.schemas.record import REVIEW_STAGE, Reject, reject_counts
from llavaforge.schemas.wds import split_member_name
from llavaforge.storage import join

_MAX_LISTED = 10


@dataclass
class VerifyReport:
    counts: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what was verified, and what is not published

    @property
    def ok(self) -> bool:
        return not self.problems

    def problem(self, text: str) -> None:
        self.problems.append(text)


def _files(fs, root: str, folder: str, suffix: str) -> list[str]:
    return sorted(fs.glob(join(root, folder, f"*{suffix}")))


class _Samples:
    """What the samples table says: every key, the keys that have conversations (LLaVA
    records), each key's image file name and the sha256 of its written bytes."""

    def __init__(self) -> None:
        self.keys: set[str] = set()
        self.with_conversations: set[str] = set()
        self.images: dict[str, tuple[str, str]] = {}  # key -> (images/ file name, sha256)
        self.rows = 0


def _check_samples(fs, root: str, report: VerifyReport) -> _Samples:
    found = _Samples()
    ids: Counter = Counter()
    shard_of_key: dict[str, str] = {}
    for path in _files(fs, root, SAMPLES_DIR, ".parquet"):
        for row in _row_group_rows(fs, path, ["id", "key", "task", "image.path", "conversations", "sha256"]):
            row["path"] = row.pop("image")["path"]
            found.rows += 1
            ids[row["id"]] += 1
            if shard_of_key.setdefault(row["key"], path) != path:
                report.problem(f"key {row['key']} written in two shards: {shard_of_key[row['key']]}, {path}")
            found.keys.add(row["key"])
            found.images[row["key"]] = (row["path"], row["sha256"])
            if row["task"] is None:  # a curation-only row: an image without conversations
                if row["conversations"]:
                    report.problem(f"samples row {row['id']}: conversations without a task")
                continue
            found.with_conversations.add(row["key"])
            for err in llava_record_errors({"id": row["id"], "image": row["path"],
                                            "conversations": row["conversations"]}):
                report.problem(f"samples row {row['id']}: {err}")
    for sample_id, n in ids.items():
        if n > 1:
            report.problem(f"sample id {sample_id} appears {n} times")
    report.counts["samples_rows"] = found.rows
    return found


def _row_group_rows(fs, path: str, columns: list[str]) -> Iterator[dict[str, Any]]:
    """A Parquet file's rows (nested columns stay nested), one row group read at a time: samples
    tables embed images, and reading a nested field reads its whole column chunk."""
    with fs.open(path, "rb") as f:
        table = pq.ParquetFile(f)
        for group in range(table.num_row_groups):
            yield from table.read_row_group(group, columns=columns).to_pylist()


def _check_wds(fs, root: str, report: VerifyReport) -> set[str]:
    """Every WebDataset stream (wds/<ext>/) holds samples of exactly `<key>.<ext>` + `<key>.json`."""
    keys: set[str] = set()
    for path in sorted(fs.glob(join(root, WDS_DIR, "*", "*.tar"))):
        stream = path.rsplit("/", 2)[-2]
        members: dict[str, set[str]] = {}
        with fs.open(path, "rb") as f, tarfile.open(fileobj=f, mode="r|*") as tar:
            for info in tar:
                key, ext = split_member_name(info.name)
                members.setdefault(key, set()).add(ext)
                if ext == "json":
                    for entry in json.loads(tar.extractfile(info).read()):
                        for err in llava_record_errors(entry):
                            report.problem(f"{path} {key}.json: {err}")
        for key, exts in members.items():
            if key in keys:
                report.problem(f"wds key {key} written twice")
            keys.add(key)
            if exts != {stream, "json"}:
                report.problem(f"{path}: sample {key} has members {sorted(exts)}, expected {stream} + json")
    return keys


def _check_llava(fs, root: str, report: VerifyReport) -> set[str]:
    keys: set[str] = set()
    images = {p.rsplit("/", 1)[-1] for p in _files(fs, root, IMAGES_DIR, "")}
    records = 0
    for path in _files(fs, root, LLAVA_DIR, ".json"):
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
    single = join(root, LLAVA_FILE)
    if fs.exists(single):
        whole, malformed = 0, False
        with fs.open(single, "r") as f:
            try:
                for item in json_list_items(f):
                    whole += 1
                    malformed = malformed or bool(llava_record_errors(item))
            except ValueError:
                malformed = True
        if whole != records or malformed:
            report.problem(f"{LLAVA_FILE} holds {whole} records, llava/ {records} (or a malformed one)")
    return keys


def json_list_items(f: TextIO, chunk_chars: int = 1 << 20) -> Iterator[Any]:
    """The items of the JSON list in `f`, one at a time: llava.json holds every record of a run,
    which as Python objects takes several times its size on disk. ValueError if `f` is not one
    JSON list."""
    decoder = json.JSONDecoder()
    buffer, at, eof = "", 0, False

    def read_more() -> None:
        nonlocal buffer, at, eof
        chunk = f.read(chunk_chars)
        eof = not chunk
        buffer, at = buffer[at:] + chunk, 0

    def next_char() -> str:  # the next character that is not whitespace, "" at the end
        nonlocal at
        while True:
            while at < len(buffer) and buffer[at].isspace():
                at += 1
            if at < len(buffer) or eof:
                return buffer[at:at + 1]
            read_more()

    if next_char() != "[":
        raise ValueError("not a JSON list")
    at += 1
    if next_char() == "]":
        at += 1
    else:
        while True:
            next_char()
            while True:
                try:
                    item, end = decoder.raw_decode(buffer, at)
                    # A number cut by the buffer's end decodes too: the item is whole once a
                    # separator follows it.
                    after = end
                    while after < len(buffer) and buffer[after].isspace():
                        after += 1
                    if buffer[after:after + 1] in (",", "]") or eof:
                        break
                except json.JSONDecodeError:
                    if eof:
                        raise
                read_more()
            yield item
            at = end
            separator = next_char()
            at += 1
            if separator == "]":
                break
            if separator != ",":
                raise ValueError(f"expected ',' or ']' after item, found {separator!r}")
    if next_char():
        raise ValueError("data after the JSON list")


def _check_images(fs, root: str, samples: _Samples, report: VerifyReport) -> None:
    """images/ holds exactly the samples' images, each with the sha256 its rows state."""
    files = {p.rsplit("/", 1)[-1]: p for p in _files(fs, root, IMAGES_DIR, "")}
    named = {name: sha for name, sha in samples.images.values()}
    if set(files) != set(named):
        only = sorted(set(files) ^ set(named))[:_MAX_LISTED]
        report.problem(f"images/ holds {len(files)} files but the samples name {len(named)} (e.g. {only})")
    for name in sorted(set(files) & set(named)):
        if hashlib.sha256(fs.cat_file(files[name])).hexdigest() != named[name]:
            report.problem(f"images/{name} does not have the sha256 its samples rows state")


def _check_review(fs, root: str, rejects: list[Reject], report: VerifyReport) -> None:
    """Each sample in review/ is a `review` reject of the same image and task."""
    held = {(r.key, r.task) for r in rejects if r.stage == REVIEW_STAGE and r.task is not None}
    rows = set()
    for path in _files(fs, root, REVIEW_DIR, ".parquet"):
        with fs.open(path, "rb") as f:
            rows |= {(r["key"], r["task"]) for r in pq.read_table(f, columns=["key", "task"]).to_pylist()}
    if rows != held:
        report.problem(f"review/ holds {len(rows)} samples but {len(held)} were held for review")
    report.counts["review_samples"] = len(rows)


def _read_rejects(fs, root: str) -> list[Reject]:
    rejects = []
    for path in _files(fs, root, REJECTS_DIR, ".parquet"):
        with fs.open(path, "rb") as f:
            rejects.extend(Reject(**row) for row in pq.read_table(f).to_pylist())
    return rejects


def verify(target: str) -> VerifyReport:
    """Verify an output prefix (what its ledger publishes) or one run folder."""
    prefix = OutputPrefix.of(target)
    if prefix.marker() is None:
        return verify_run(target)
    report = VerifyReport()
    ledger = Ledger.load(prefix)
    published = ledger.published_folders()
    if not published:
        report.problem(f"{target}: nothing is published yet (no ledger entry)")
    for entry in ledger.runs:
        if entry.output not in published:
            continue
        run_report = verify_run(prefix.url_of(entry.output), expected_run_id=entry.run_id)
        report.notes.append(f"published   {entry.output} (ledger entry {entry.seq}, run {entry.run_id})")
        report.problems += [f"{entry.output}: {p}" for p in run_report.problems]
        for name, value in run_report.counts.items():
            if isinstance(value, int):
                report.counts[name] = report.counts.get(name, 0) + value
    for folder in prefix.run_folders():
        if folder not in {r.output for r in ledger.runs}:
            report.notes.append(f"unpublished {folder} (no ledger entry: a crashed, failed or running job; the "
                                f"next job on this prefix removes it)")
        elif folder not in published:
            report.notes.append(f"superseded  {folder} (replaced by a later run; the next job removes it)")
    return report


def verify_run(run_dir: str, expected_run_id: str = "") -> VerifyReport:
    """Recompute one run folder's accounting from its files and compare with its stats.json."""
    report = VerifyReport()
    fs, root = fsspec.core.url_to_fs(run_dir)
    stats_path = join(root, STATS_FILE)
    if not fs.exists(stats_path):
        report.problem(f"{run_dir}: no {STATS_FILE}: the run did not complete")
        return report
    with fs.open(stats_path, "r") as f:
        stats = json.load(f)
    if expected_run_id and stats.get("run_id") != expected_run_id:
        report.problem(f"stats.json belongs to run {stats.get('run_id')}, the ledger names run {expected_run_id}")
    samples = _check_samples(fs, root, report)
    for name, keys, expected in (("wds", _check_wds(fs, root, report), samples.keys),
                                 ("llava", _check_llava(fs, root, report), samples.with_conversations)):
        if keys != expected:
            only = sorted(keys ^ expected)[:_MAX_LISTED]
            report.problem(f"{name} keys differ from samples keys ({len(keys)} vs {len(expected)}; e.g. {only})")
    _check_images(fs, root, samples, report)
    rejects = _read_rejects(fs, root)
    _check_review(fs, root, rejects, report)
    counts = reject_counts(rejects)
    written = len(samples.keys)
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
