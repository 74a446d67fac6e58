"""The ledger of nightly runs: which input shards (by fingerprint) were processed, under
which recipe, by which run, with what outcome.

It lives under `PREFIX/_ledger/`: one JSON file per completed run, written in one piece
(temporary name, then moved) only after the run's outputs are complete and verified; the
ledger is the union of those files. A run that crashes writes nothing here, so its shards
are still pending next time. Each run also leaves a sorted key index of the images it
published, under `_ledger/keys/`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import posixpath
from dataclasses import dataclass, field
from typing import Any, Iterable, Optional

from fsspec.core import url_to_fs

from llavaforge.transforms.write import join

LEDGER_DIR = "_ledger"
KEYS_DIR = "keys"
REPROCESS_CHOICES = ("changed-recipe",)
DONE, FAILED = "done", "failed"
# Where filesystems keep a content version, most exact first: checksums and ETags (GCS,
# S3, Azure), object generations, then modification times (local, HTTP), then creation.
_VERSION_FIELDS = ("md5Hash", "crc32c", "ETag", "etag", "content_md5", "checksum", "generation",
                   "mtime", "LastModified", "last_modified", "updated", "created")


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
    outcome: str  # DONE or FAILED (the shard itself could not be read to the end)
    images_written: int = 0
    detail: str = ""


@dataclass
class RunEntry:
    run_id: str
    date: str
    recipe_hash: str
    output: str  # relative to the prefix: dt=YYYY-MM-DD/run-<id>
    started_at: float
    finished_at: float
    stats: dict[str, Any]
    keys_index: str  # relative to the prefix
    keys: int
    shards: list[ShardEntry] = field(default_factory=list)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "RunEntry":
        return cls(**{**data, "shards": [ShardEntry(**s) for s in data["shards"]]})


@dataclass
class Plan:
    """What a run does with each matched shard."""

    todo: list[str] = field(default_factory=list)  # processed by this run
    done: list[str] = field(default_factory=list)  # already done under this recipe
    pending_recipe: list[str] = field(default_factory=list)  # done under another recipe only
    reasons: dict[str, str] = field(default_factory=dict)  # todo url -> new | changed | retry | recipe


class Ledger:
    """The union of the ledger files under one output prefix."""

    def __init__(self, prefix: str, runs: list[RunEntry]) -> None:
        self.prefix = prefix
        self.runs = sorted(runs, key=lambda r: (r.finished_at, r.run_id))

    @classmethod
    def load(cls, prefix: str) -> "Ledger":
        fs, root = url_to_fs(prefix)
        runs = []
        for path in sorted(fs.glob(join(root, LEDGER_DIR, "run-*.json"))):
            with fs.open(path, "r") as f:
                runs.append(RunEntry.from_json(json.load(f)))
        return cls(prefix, runs)

    def path(self, relative: str) -> str:
        return join(self.prefix, relative)

    def shard_entries(self) -> list[ShardEntry]:
        return [s for run in self.runs for s in run.shards]

    def key_indexes(self, recipe_hash: str) -> list[str]:
        """Key index files of the runs made with this recipe: what counts as published."""
        return [self.path(r.keys_index) for r in self.runs if r.recipe_hash == recipe_hash]

    def plan(self, fingerprints: dict[str, dict[str, Any]], recipe_hash: str,
             reprocess: Optional[str] = None) -> Plan:
        """Sort matched shards into todo / done / pending under a new recipe.

        A shard is done when an entry has its current fingerprint, this recipe and outcome
        done. One done only under other recipes is left alone unless `reprocess` is
        "changed-recipe". Anything else (new, changed fingerprint, failed) is todo."""
        if reprocess is not None and reprocess not in REPROCESS_CHOICES:
            raise ValueError(f"reprocess must be one of {REPROCESS_CHOICES}, got {reprocess!r}")
        by_url: dict[str, list[ShardEntry]] = {}
        for entry in self.shard_entries():
            by_url.setdefault(entry.url, []).append(entry)
        plan = Plan()
        for url, fp in sorted(fingerprints.items()):
            fid = fingerprint_id(url, fp)
            entries = by_url.get(url, [])
            done = [e for e in entries if e.fingerprint == fid and e.outcome == DONE]
            if any(e.recipe_hash == recipe_hash for e in done):
                plan.done.append(url)
            elif done and reprocess != "changed-recipe":
                plan.pending_recipe.append(url)
            else:
                plan.todo.append(url)
                plan.reasons[url] = ("recipe" if done else "retry" if any(e.fingerprint == fid for e in entries)
                                     else "changed" if entries else "new")
        return plan

    def commit(self, run: RunEntry) -> str:
        """Write one run's ledger file in one piece; returns its path."""
        fs, root = url_to_fs(self.prefix)
        final = join(root, LEDGER_DIR, f"run-{run.run_id}.json")
        temporary = join(root, LEDGER_DIR, f".run-{run.run_id}.json.tmp")
        fs.makedirs(join(root, LEDGER_DIR), exist_ok=True)
        with fs.open(temporary, "w") as f:
            json.dump(dataclasses.asdict(run), f, indent=1, sort_keys=True)
        fs.mv(temporary, final)
        self.runs.append(run)
        return fs.unstrip_protocol(final)


def key_index_path(run_id: str) -> str:
    """Relative to the prefix."""
    return f"{LEDGER_DIR}/{KEYS_DIR}/run-{run_id}.parquet"


def run_output_path(date: str, run_id: str) -> str:
    """Relative to the prefix."""
    return f"dt={date}/run-{run_id}"


def published_twice(key_runs: Iterable[tuple[str, str]]) -> dict[str, list[str]]:
    """Keys that appear in more than one run's key index: key -> run ids."""
    runs_of: dict[str, set[str]] = {}
    for key, run_id in key_runs:
        runs_of.setdefault(key, set()).add(run_id)
    return {key: sorted(runs) for key, runs in runs_of.items() if len(runs) > 1}
