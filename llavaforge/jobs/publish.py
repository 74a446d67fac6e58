"""Publish: the last step of every job's Beam graph, run by the job itself.

It receives the run's stats once the run folder is complete and then, on whichever worker:
verifies the folder from its files, records each input shard's outcome, writes the key index
(nightly), commits the ledger entry that publishes the folder, removes the output it replaces
(`run` prefixes) and the run's staged image bytes, and releases the prefix's lease. A job launched by a Flex Template,
Cloud Scheduler or Airflow, whose launcher never waits, therefore still publishes exactly
once; a driver that waits only reports. Every step is idempotent, so a retried bundle redoes
nothing twice; a crash before the commit leaves the previous output published and this
folder unpublished.
"""

from __future__ import annotations

import contextlib
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any, Iterator, Optional

import apache_beam as beam
import pyarrow.parquet as pq
from fsspec.core import url_to_fs

from llavaforge.crashpoint import stall_at
from llavaforge.jobs.lease import Lease
from llavaforge.jobs.ledger import DONE, FAILED, RETRY, Ledger, RunEntry, ShardEntry, fingerprint_id
from llavaforge.jobs.prefix import OutputPrefix
from llavaforge.jobs.verify import verify_run
from llavaforge.schemas.key_index import write_key_index
from llavaforge.schemas.dataset_card import dataset_card
from llavaforge.schemas.layout import DATASET_CARD, REJECTS_DIR, REVIEW_DIR, SAMPLES_DIR, key_index
from llavaforge.storage import join, write_atomic
from llavaforge.transforms.read import STAGE as READ_STAGE

STATS_KEPT = ("inputs", "images_written", "samples_written", "images_rejected", "duplicates",
              "sample_rejects", "review_samples", "balanced")


class RunNotVerified(RuntimeError):
    """A run folder whose files do not balance or are malformed: it is not published."""


@dataclass(frozen=True)
class Publication:
    """Everything the publication step needs, fixed when the job is launched."""

    prefix: str  # URL of the output prefix
    kind: str  # run | nightly
    seq: int  # the ledger entry this run creates
    run_id: str
    date: str
    recipe_hash: str
    output: str  # the run folder, relative to the prefix
    started_at: float
    fingerprints: dict[str, dict[str, Any]]  # input shard URL -> fingerprint
    lease: Optional[Lease]
    superseded: tuple[str, ...] = ()  # run folders this one replaces (a `run` prefix's previous output)


def written_keys(run_dir: str) -> set[str]:
    """The distinct image keys a run folder holds (its samples/ tables)."""
    fs, root = url_to_fs(run_dir)
    keys: set[str] = set()
    for path in fs.glob(join(root, SAMPLES_DIR, "*.parquet")):
        with fs.open(path, "rb") as f:
            keys.update(pq.read_table(f, columns=["key"]).column("key").to_pylist())
    return keys


def shard_outcomes(run_dir: str, shard_urls: list[str]) -> dict[str, dict[str, Any]]:
    """Per input shard: its outcome (failed: the read stage rejected the shard as a whole;
    retry: some of its images were rejected for a retryable reason; else done), images written
    and pending, and the failure detail, from the run folder's own tables."""
    fs, root = url_to_fs(run_dir)
    written: Counter = Counter()
    for path in fs.glob(join(root, SAMPLES_DIR, "*.parquet")):
        with fs.open(path, "rb") as f:
            rows = pq.read_table(f, columns=["key", "source_url"]).to_pylist()
        written.update({(r["source_url"], r["key"]) for r in rows})
    per_url = Counter(url for url, _ in written)
    failures: dict[str, tuple[str, bool]] = {}
    pending: Counter = Counter()
    for path in fs.glob(join(root, REJECTS_DIR, "*.parquet")):
        with fs.open(path, "rb") as f:
            rows = pq.read_table(f, columns=["source_url", "source_member", "stage", "reason", "detail", "task",
                                             "retryable"]).to_pylist()
        for r in rows:
            if r["stage"] == READ_STAGE and r["source_member"] == "":
                failures.setdefault(r["source_url"], (f"{r['reason']}: {r['detail']}", bool(r["retryable"])))
            elif r["task"] is None and r["retryable"]:
                pending[r["source_url"]] += 1
    outcomes = {}
    for url in shard_urls:
        detail, retryable_failure = failures.get(url, ("", False))
        outcome = (RETRY if retryable_failure else FAILED) if detail else RETRY if pending[url] else DONE
        if outcome == RETRY and not detail:
            detail = f"{pending[url]} images failed for a retryable reason"
        outcomes[url] = {"outcome": outcome, "images_written": per_url[url], "images_pending": pending[url],
                         "detail": detail}
    return outcomes


def publish(publication: Publication, stats: dict[str, Any]) -> RunEntry:
    """Verify the run folder and commit it (see the module doc); returns the ledger entry."""
    p = publication
    prefix = OutputPrefix.of(p.prefix)
    run_dir = prefix.url_of(p.output)
    report = verify_run(run_dir, expected_run_id=p.run_id)
    if not report.ok:
        raise RunNotVerified(f"run {p.run_id} at {run_dir} does not verify, so it is not published: "
                             + "; ".join(report.problems[:5]))
    outcomes = shard_outcomes(run_dir, list(p.fingerprints))
    shards = [ShardEntry(url=url, fingerprint=fingerprint_id(url, fp), size=fp["size"], version=fp["version"],
                         recipe_hash=p.recipe_hash, run_id=p.run_id, **outcomes[url])
              for url, fp in sorted(p.fingerprints.items())]
    keys_index, keys = "", 0
    if p.kind == "nightly":
        keys_index = key_index(p.run_id)
        keys = write_key_index(written_keys(run_dir), p.run_id, prefix.url_of(keys_index))
    stall_at("before-commit")
    entry = RunEntry(seq=p.seq, kind=p.kind, run_id=p.run_id, date=p.date, recipe_hash=p.recipe_hash,
                     output=p.output, started_at=p.started_at, finished_at=time.time(),
                     stats={k: stats[k] for k in STATS_KEPT}, keys_index=keys_index, keys=keys, shards=shards)
    ledger = Ledger.load(prefix)
    ledger.commit(entry)
    write_dataset_card(prefix, ledger)
    stall_at("after-commit")
    for folder in p.superseded:
        prefix.remove_run_folder(folder)
    with contextlib.suppress(OSError):  # what is left goes when the next job takes the prefix
        prefix.remove_staging(p.run_id)
    if p.lease is not None:
        p.lease.release()
    return entry


def write_dataset_card(prefix: OutputPrefix, ledger: Ledger) -> None:
    """README.md at the prefix: a Hugging Face dataset card over what the ledger publishes
    (rewritten at each publication, and when a job starts, so it never names a removed folder)."""
    published = [r for r in ledger.runs if r.output in set(ledger.published_folders())]
    samples = [f"{r.output}/{SAMPLES_DIR}/*.parquet" for r in published if r.stats.get("samples_written")]
    review = [f"{r.output}/{REVIEW_DIR}/*.parquet" for r in published if r.stats.get("review_samples")]
    if not samples:
        return
    write_atomic(prefix.url_of(DATASET_CARD),
                 dataset_card(samples, review, f"llavaforge output: {prefix.url.rsplit('/', 1)[-1]}").encode())


class _PublishFn(beam.DoFn):
    def __init__(self, publication: Publication) -> None:
        super().__init__()
        self.publication = publication

    def process(self, stats: dict[str, Any]) -> Iterator[dict[str, Any]]:
        yield publish(self.publication, stats).to_json()


class Publish(beam.PTransform):
    """stats (one element) -> the committed ledger entry (one element)."""

    def __init__(self, publication: Publication) -> None:
        super().__init__()
        self.publication = publication

    def expand(self, stats):
        return stats | "VerifyAndCommit" >> beam.ParDo(_PublishFn(self.publication))
