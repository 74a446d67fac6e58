"""Nightly incremental runs: process only the shards the ledger has not seen (under this
recipe), write to `PREFIX/dt=YYYY-MM-DD/run-<id>/`, and record the run in the ledger only
once its outputs are complete and verified.

A crash anywhere before the ledger file is written leaves the run unrecorded: its shards
stay pending and the next run processes them again. Images published by earlier runs of the
same recipe are counted as duplicates, not written again.
"""

from __future__ import annotations

import posixpath
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any, Optional, Sequence

import pyarrow.parquet as pq
from fsspec.core import url_to_fs

from llavaforge.pipelines.crashpoint import stall_at
from llavaforge.pipelines.ledger import (DONE, FAILED, LEDGER_DIR, Ledger, Plan, RunEntry, ShardEntry,
                                         fingerprint, fingerprint_id, key_index_path, published_twice,
                                         run_output_path)
from llavaforge.pipelines.published import read_key_index, write_key_index, written_keys
from llavaforge.recipe import Recipe
from llavaforge.runners.local import new_run_id, run
from llavaforge.transforms.read import STAGE as READ_STAGE
from llavaforge.transforms.read import match_inputs
from llavaforge.transforms.write import join
from llavaforge.verify import verify

_STATS_KEPT = ("inputs", "images_written", "samples_written", "images_rejected", "duplicates",
               "sample_rejects", "balanced")


class NightlyError(RuntimeError):
    """A run finished but its outputs do not verify; it is not recorded in the ledger."""


@dataclass
class NightlyResult:
    plan: Plan
    run: Optional[RunEntry]  # None when there was nothing to do
    stats: Optional[dict[str, Any]]
    output: Optional[str]


def today() -> str:
    return time.strftime("%Y-%m-%d", time.gmtime())


def nightly(input_patterns: Sequence[str], output_prefix: str, recipe: Recipe, date: Optional[str] = None,
            beam_args: Sequence[str] = (), reprocess: Optional[str] = None) -> NightlyResult:
    """One incremental run over the shards matching `input_patterns` that the ledger under
    `output_prefix` does not hold as done with this recipe."""
    date = date or today()
    time.strptime(date, "%Y-%m-%d")  # a bad date fails before anything runs
    ledger = Ledger.load(output_prefix)
    shard_urls = match_inputs(input_patterns, recipe.read)
    fingerprints = {url: fingerprint(url) for url in shard_urls}
    recipe_hash = recipe.hash()
    plan = ledger.plan(fingerprints, recipe_hash, reprocess)
    if not plan.todo:
        return NightlyResult(plan, None, None, None)
    run_id = new_run_id()
    output = ledger.path(run_output_path(date, run_id))
    started_at = time.time()
    stats = run(recipe, input_patterns, output, beam_args, run_id=run_id, shard_urls=plan.todo,
                published_keys=ledger.key_indexes(recipe_hash))
    report = verify(output)
    if not report.ok:
        raise NightlyError(f"run {run_id} at {output} does not verify; not recorded in the ledger: "
                           + "; ".join(report.problems[:5]))
    stall_at("before-ledger")
    keys_index = key_index_path(run_id)
    keys = write_key_index(written_keys(output), run_id, ledger.path(keys_index))
    shards = [ShardEntry(url=url, fingerprint=fingerprint_id(url, fingerprints[url]),
                         size=fingerprints[url]["size"], version=fingerprints[url]["version"],
                         recipe_hash=recipe_hash, run_id=run_id, **outcome)
              for url, outcome in shard_outcomes(output, plan.todo).items()]
    entry = RunEntry(run_id=run_id, date=date, recipe_hash=recipe_hash, output=run_output_path(date, run_id),
                     started_at=started_at, finished_at=time.time(),
                     stats={k: stats[k] for k in _STATS_KEPT}, keys_index=keys_index, keys=keys,
                     shards=shards)
    ledger.commit(entry)
    return NightlyResult(plan, entry, stats, output)


def shard_outcomes(output: str, shard_urls: list[str]) -> dict[str, dict[str, Any]]:
    """Per shard: outcome (failed when the read stage rejected the shard as a whole), images
    written, and the failure detail, from the run's own output tables."""
    fs, root = url_to_fs(output)
    written: Counter = Counter()
    for path in fs.glob(join(root, "samples", "*.parquet")):
        with fs.open(path, "rb") as f:
            rows = pq.read_table(f, columns=["key", "source_url"]).to_pylist()
        written.update({(r["source_url"], r["key"]) for r in rows})
    failures: dict[str, str] = {}
    for path in fs.glob(join(root, "rejects", "*.parquet")):
        with fs.open(path, "rb") as f:
            rows = pq.read_table(f, columns=["source_url", "source_member", "stage", "reason", "detail"]).to_pylist()
        for r in rows:
            if r["stage"] == READ_STAGE and r["source_member"] == "":
                failures.setdefault(r["source_url"], f"{r['reason']}: {r['detail']}")
    per_url = Counter(url for url, _ in written)
    return {url: {"outcome": FAILED if url in failures else DONE, "images_written": per_url[url],
                  "detail": failures.get(url, "")}
            for url in shard_urls}


def format_plan(plan: Plan) -> str:
    reasons = Counter(plan.reasons.values())
    lines = [f"shards      {len(plan.todo)} to process"
             + (f" ({', '.join(f'{k} {v}' for k, v in sorted(reasons.items()))})" if reasons else "")
             + f", {len(plan.done)} already done"]
    if plan.pending_recipe:
        lines.append(f"pending     {len(plan.pending_recipe)} shards were processed under another recipe "
                     f"only; rerun with --reprocess changed-recipe to process them under this one")
    return "\n".join(lines)


def incomplete_runs(prefix: str, ledger: Ledger) -> list[str]:
    """Run folders with no ledger entry: crashed, failed verification, or still running."""
    fs, root = url_to_fs(prefix)
    recorded = {r.output for r in ledger.runs}
    found = [posixpath.relpath(p, root) for p in fs.glob(join(root, "dt=*", "run-*"))]
    return sorted(p for p in found if p not in recorded)


def status(prefix: str) -> str:
    """The ledger as text: runs, shards done / pending / failed, counts, last success, and
    whether any key was published twice under one recipe."""
    ledger = Ledger.load(prefix)
    if not ledger.runs:
        return f"ledger      {join(prefix, LEDGER_DIR)}: no completed runs"
    current = ledger.runs[-1].recipe_hash
    lines = [f"ledger      {join(prefix, LEDGER_DIR)}: {len(ledger.runs)} runs, current recipe {current}",
             "runs:"]
    for r in ledger.runs:
        failed = sum(s.outcome == FAILED for s in r.shards)
        lines.append(f"  {r.run_id}  {r.date}  recipe {r.recipe_hash}  shards {len(r.shards)}"
                     f" (failed {failed})  inputs {r.stats['inputs']}  written {r.stats['images_written']}"
                     f"  rejected {r.stats['images_rejected']}  duplicates {r.stats['duplicates']}")
    latest: dict[str, ShardEntry] = {}
    for s in ledger.shard_entries():  # runs are in completion order: the last entry wins
        latest[s.url] = s
    done = [s for s in latest.values() if s.outcome == DONE and s.recipe_hash == current]
    failed = [s for s in latest.values() if s.outcome == FAILED]
    pending = [s for s in latest.values() if s.outcome == DONE and s.recipe_hash != current]
    lines.append(f"shards      {len(latest)} known: {len(done)} done, {len(pending)} pending under the "
                 f"current recipe, {len(failed)} failed")
    lines += [f"  failed    {s.url}  (run {s.run_id}: {s.detail})" for s in failed]
    totals = Counter()
    for r in ledger.runs:
        totals.update({k: r.stats[k] for k in ("inputs", "images_written", "images_rejected", "duplicates")})
    lines.append(f"counts      inputs {totals['inputs']}  written {totals['images_written']}  "
                 f"rejected {totals['images_rejected']}  duplicates {totals['duplicates']}")
    last = ledger.runs[-1]
    lines.append(f"last success {last.run_id} ({last.output}) at "
                 f"{time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(last.finished_at))} UTC")
    lines += [f"incomplete  {p} (no ledger entry: crashed, failed to verify, or running)"
              for p in incomplete_runs(prefix, ledger)]
    twice = cross_run_duplicates(ledger)
    lines.append(f"published twice: {len(twice)} keys" + (f" e.g. {next(iter(twice.items()))}" if twice else ""))
    return "\n".join(lines)


def cross_run_duplicates(ledger: Ledger) -> dict[str, list[str]]:
    """Keys published by more than one recorded run of the same recipe: key -> run ids."""
    twice: dict[str, list[str]] = {}
    for recipe_hash in {r.recipe_hash for r in ledger.runs}:
        pairs = (pair for path in ledger.key_indexes(recipe_hash) for pair in read_key_index(path))
        twice.update(published_twice(pairs))
    return twice
