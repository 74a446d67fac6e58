"""`llavaforge status PREFIX`: the ledger as text — runs, shards done / to retry / failed /
pending, counts, the last success, folders not published, and keys published twice."""

from __future__ import annotations

import time
from collections import Counter

from llavaforge.jobs.lease import holder
from llavaforge.jobs.ledger import DONE, FAILED, RETRY, Ledger, ShardEntry, published_twice
from llavaforge.jobs.prefix import OutputPrefix
from llavaforge.schemas.key_index import read_key_index
from llavaforge.schemas.layout import LEDGER_DIR


def cross_run_duplicates(ledger: Ledger) -> dict[str, list[str]]:
    """Keys published by more than one recorded run of the same recipe: key -> run ids."""
    twice: dict[str, list[str]] = {}
    for recipe_hash in {r.recipe_hash for r in ledger.runs}:
        pairs = (pair for url in ledger.key_indexes(recipe_hash) for pair in read_key_index(url))
        twice.update(published_twice(pairs))
    return twice


def _utc(seconds: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(seconds)) + " UTC"


def status(url: str) -> str:
    prefix = OutputPrefix.of(url)
    ledger = Ledger.load(prefix)
    lines = []
    busy = holder(prefix)
    if busy:
        lines.append(f"running     run {busy.get('run_id')} ({busy.get('holder')}), lease until {_utc(busy['expires_at'])}")
    if not ledger.runs:
        return "\n".join(lines + [f"ledger      {prefix.url_of(LEDGER_DIR)}: no published runs"])
    current = ledger.runs[-1].recipe_hash
    lines += [f"ledger      {prefix.url_of(LEDGER_DIR)}: {len(ledger.runs)} runs, current recipe {current}", "runs:"]
    for r in ledger.runs:
        counts = Counter(s.outcome for s in r.shards)
        lines.append(f"  {r.seq:>4} {r.run_id}  {r.date or r.kind}  recipe {r.recipe_hash}  shards {len(r.shards)}"
                     f" (retry {counts[RETRY]}, failed {counts[FAILED]})  inputs {r.stats['inputs']}"
                     f"  written {r.stats['images_written']}  rejected {r.stats['images_rejected']}"
                     f"  duplicates {r.stats['duplicates']}")
    latest: dict[str, ShardEntry] = {}
    for s in ledger.shard_entries():  # in commit order: the last entry wins
        latest[s.url] = s
    done = [s for s in latest.values() if s.outcome == DONE and s.recipe_hash == current]
    retry = [s for s in latest.values() if s.outcome == RETRY]
    failed = [s for s in latest.values() if s.outcome == FAILED]
    pending = [s for s in latest.values() if s.outcome == DONE and s.recipe_hash != current]
    lines.append(f"shards      {len(latest)} known: {len(done)} done, {len(retry)} to retry, {len(failed)} failed, "
                 f"{len(pending)} pending under the current recipe")
    lines += [f"  retry     {s.url}  (run {s.run_id}: {s.detail}; the next run retries it)" for s in retry]
    lines += [f"  failed    {s.url}  (run {s.run_id}: {s.detail})" for s in failed]
    totals: Counter = Counter()
    for r in ledger.runs:
        totals.update({k: r.stats[k] for k in ("inputs", "images_written", "images_rejected", "duplicates")})
    lines.append(f"counts      inputs {totals['inputs']}  written {totals['images_written']}  "
                 f"rejected {totals['images_rejected']}  duplicates {totals['duplicates']}")
    last = ledger.runs[-1]
    lines.append(f"last success {last.run_id} ({last.output}) at {_utc(last.finished_at)}")
    published, recorded = set(ledger.published_folders()), {r.output for r in ledger.runs}
    for folder in prefix.run_folders():
        if folder not in recorded:
            lines.append(f"unpublished {folder} (no ledger entry: a crashed, failed or running job)")
        elif folder not in published:
            lines.append(f"superseded  {folder} (replaced by a later run; the next job removes it)")
    twice = cross_run_duplicates(ledger)
    lines.append(f"published twice: {len(twice)} keys" + (f" e.g. {next(iter(twice.items()))}" if twice else ""))
    return "\n".join(lines)
