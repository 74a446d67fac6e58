"""The ledger of an output prefix: the commit log of the runs it publishes.

`PREFIX/_ledger/NNNNNNNN.json` is entry N: one run, its folder, its counts and, per input shard
(by fingerprint), the outcome. An entry is created exclusively (`storage.create_exclusive`)
with the next number after the entries the run saw when it started, so of two runs that
raced, exactly one publishes; the other fails and its folder stays unpublished. A run folder
is published exactly when an entry names it: for a `run` prefix the latest entry is the
output, for a `nightly` prefix every entry is part of it.

Shard outcomes: `done` (every image got a final outcome), `retry` (some images failed for a
reason a later run may not meet: the next run processes the shard again, skipping images
already published), `failed` (the shard itself could not be read: redone when the file
changes, or with `--reprocess failed`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import posixpath
from dataclasses import dataclass, field
from typing import Any, Iterable, Optional

from fsspec.core import url_to_fs

from llavaforge.jobs.prefix import OutputPrefix
from llavaforge.schemas.layout import LEDGER_DIR, ledger_entry, ledger_seq
from llavaforge.storage import create_exclusive, json_bytes, read_json

REPROCESS_CHOICES = ("changed-recipe", "failed")
DONE, RETRY, FAILED = "done", "retry", "failed"
# Where filesystems keep a content version, most exact first: checksums and ETags (GCS,
# S3, Azure), object generations, then modification times (local, HTTP), then creation.
_VERSION_FIELDS = ("md5Hash", "crc32c", "ETag", "etag", "content_md5", "checksum", "generation",
                   "mtime", "LastModified", "last_modified", "updated", "created")


class ConcurrentCommitError(RuntimeError):
    """Another run published into the prefix after this one started; this run's folder stays
    unpublished (its shards remain to do)."""


def fingerprint(url: str) -> dict[str, Any]:
    """Size and content version of a shard as its filesystem's `info()` offers them.
    A folder shard's version summarises its files' sizes and versions."""
    fs, path = url_to_fs(url)
    info = fs.info(path)
    if info.get("type") == "directory":
        files = fs.find(path, detail=True)
        listing = sorted((posixpath.relpath(p, path), d.get("size"), _version(d)[1]) for p, d in files.items())
        digest = hashlib.sha256(json.dumps(listing, default=str).encode()).hexdigest()[:16]
        return {"size": sum(d.get("size") or 0 for d in files.values()), "version_field": "listing",
                "version": digest}
    version_field, version = _version(info)
    return {"size": info.get("size"), "version_field": version_field, "version": version}


def _version(info: dict[str, Any]) -> tuple[Optional[str], Optional[str]]:
    for name in _VERSION_FIELDS:
        if info.get(name) is not None:
            return name, str(info[name])
    return None, None


def fingerprint_id(url: str, fp: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps([url, fp], sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class ShardEntry:
    url: str
    fingerprint: str  # fingerprint_id of (url, size, version)
    size: Optional[int]
    version: Optional[str]
    recipe_hash: str
    run_id: str
    outcome: str  # DONE, RETRY or FAILED
    images_written: int = 0
    images_pending: int = 0  # images rejected for a retryable reason (outcome RETRY)
    detail: str = ""


@dataclass
class RunEntry:
    seq: int
    kind: str  # run | nightly
    run_id: str
    date: str  # nightly: the partition date; run: ""
    recipe_hash: str
    output: str  # the run folder, relative to the prefix
    started_at: float
    finished_at: float
    stats: dict[str, Any]
    keys_index: str = ""  # nightly: relative path of the run's published keys
    keys: int = 0
    shards: list[ShardEntry] = field(default_factory=list)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "RunEntry":
        return cls(**{**data, "shards": [ShardEntry(**s) for s in data["shards"]]})

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class Plan:
    """What a run does with each matched shard."""

    todo: list[str] = field(default_factory=list)  # processed by this run
    done: list[str] = field(default_factory=list)  # already done under this recipe
    pending_recipe: list[str] = field(default_factory=list)  # done under another recipe only
    failed: list[str] = field(default_factory=list)  # unreadable before and unchanged: left alone
    reasons: dict[str, str] = field(default_factory=dict)  # todo url -> new | changed | retry | recipe | failed


class Ledger:
    """The entries under one output prefix, in commit order."""

    def __init__(self, prefix: OutputPrefix, runs: list[RunEntry]) -> None:
        self.prefix = prefix
        self.runs = sorted(runs, key=lambda r: r.seq)

    @classmethod
    def load(cls, prefix: "OutputPrefix | str") -> "Ledger":
        prefix = OutputPrefix.of(prefix) if isinstance(prefix, str) else prefix
        runs = []
        for path in sorted(prefix.fs.glob(prefix.path_of(f"{LEDGER_DIR}/*.json"))):
            if ledger_seq(posixpath.basename(path)) is not None:
                with prefix.fs.open(path, "r") as f:
                    runs.append(RunEntry.from_json(json.load(f)))
        return cls(prefix, runs)

    @property
    def next_seq(self) -> int:
        return self.runs[-1].seq + 1 if self.runs else 1

    def entry_of(self, run_id: str) -> Optional[RunEntry]:
        return next((r for r in self.runs if r.run_id == run_id), None)

    def published_folders(self) -> list[str]:
        """Run folders that are part of the output: the latest one for a `run` prefix, every
        committed one for a `nightly` prefix."""
        if not self.runs:
            return []
        if self.runs[-1].kind == "run":
            return [self.runs[-1].output]
        return [r.output for r in self.runs]

    def shard_entries(self) -> list[ShardEntry]:
        return [s for run in self.runs for s in run.shards]

    def key_indexes(self, recipe_hash: str) -> list[str]:
        """Key index files of the runs made with this recipe: what counts as published."""
        return [self.prefix.url_of(r.keys_index) for r in self.runs if r.recipe_hash == recipe_hash and r.keys_index]

    def plan(self, fingerprints: dict[str, dict[str, Any]], recipe_hash: str,
             reprocess: Iterable[str] = ()) -> Plan:
        """Sort matched shards into todo / done / pending under a new recipe / failed.

        Done: an entry with the shard's current fingerprint, this recipe and outcome done.
        Done only under other recipes: pending unless `changed-recipe` is in `reprocess`.
        The latest entry with this fingerprint says retry: todo. It says failed: left alone
        unless `failed` is in `reprocess`. New or changed: todo."""
        reprocess = set(reprocess)
        unknown = reprocess - set(REPROCESS_CHOICES)
        if unknown:
            raise ValueError(f"reprocess must be among {REPROCESS_CHOICES}, got {sorted(unknown)}")
        by_url: dict[str, list[ShardEntry]] = {}
        for entry in self.shard_entries():
            by_url.setdefault(entry.url, []).append(entry)
        plan = Plan()
        for url, fp in sorted(fingerprints.items()):
            fid = fingerprint_id(url, fp)
            entries = by_url.get(url, [])
            same = [e for e in entries if e.fingerprint == fid]
            done = [e for e in same if e.outcome == DONE]
            if any(e.recipe_hash == recipe_hash for e in done):
                plan.done.append(url)
            elif done:
                if "changed-recipe" in reprocess:
                    plan.todo.append(url)
                    plan.reasons[url] = "recipe"
                else:
                    plan.pending_recipe.append(url)
            elif same and same[-1].outcome == FAILED and "failed" not in reprocess:
                plan.failed.append(url)
            else:
                plan.todo.append(url)
                plan.reasons[url] = (same[-1].outcome if same else "changed" if entries else "new")
        return plan

    def commit(self, entry: RunEntry) -> None:
        """Create entry `entry.seq`; idempotent for the same run, ConcurrentCommitError when
        another run took that number."""
        url = self.prefix.url_of(ledger_entry(entry.seq))
        if not create_exclusive(url, json_bytes(entry.to_json())):
            existing = read_json(url) or {}
            if existing.get("run_id") != entry.run_id:
                raise ConcurrentCommitError(
                    f"run {existing.get('run_id')} published into {self.prefix.url} (ledger entry {entry.seq}) while "
                    f"run {entry.run_id} was running; {entry.run_id}'s folder {entry.output} is not published")
        if self.entry_of(entry.run_id) is None:
            self.runs.append(entry)


def published_twice(key_runs: Iterable[tuple[str, str]]) -> dict[str, list[str]]:
    """Keys that appear in more than one run's key index: key -> run ids."""
    runs_of: dict[str, set[str]] = {}
    for key, run_id in key_runs:
        runs_of.setdefault(key, set()).add(run_id)
    return {key: sorted(runs) for key, runs in runs_of.items() if len(runs) > 1}


def published_run_dir(prefix_url: str) -> str:
    """The URL of the run folder a `run` prefix publishes now (its latest ledger entry)."""
    prefix = OutputPrefix.of(prefix_url)
    folders = Ledger.load(prefix).published_folders()
    if not folders:
        raise FileNotFoundError(f"{prefix_url}: nothing is published (no ledger entry)")
    return prefix.url_of(folders[-1])
