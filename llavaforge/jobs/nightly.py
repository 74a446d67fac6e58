"""Nightly incremental runs: process only the shards the ledger has not seen done (under this
recipe), write `PREFIX/dt=YYYY-MM-DD/run-<id>/`, and let the job's publication step record it.

A crash anywhere before the ledger entry is written leaves the run unpublished: its folder is
removed by the next job and its shards are still to do. Images published by earlier runs of
the same recipe are counted as duplicates, not written again. A shard whose images failed for
a retryable reason (an LLM endpoint down, a model error) is `retry` in the ledger and is
processed again by the next run; one that could not be read is `failed` and is left alone
until it changes or `--reprocess failed` asks for it.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from typing import Optional, Sequence

from llavaforge.config.recipe import Recipe
from llavaforge.jobs.ledger import Ledger, Plan, fingerprint
from llavaforge.jobs.run import JobResult, new_run_id, prepare, start, start_holding, take_prefix


@dataclass
class NightlyResult:
    plan: Plan
    job: Optional[JobResult]  # None when there was nothing to do


def today() -> str:
    return time.strftime("%Y-%m-%d", time.gmtime())


def nightly(input_patterns: Sequence[str], output_prefix: str, recipe: Recipe, date: Optional[str] = None,
            beam_args: Sequence[str] = (), reprocess: Sequence[str] = ()) -> NightlyResult:
    """One incremental run over the shards matching `input_patterns` that the ledger under
    `output_prefix` does not hold as done with this recipe."""
    date = date or today()
    time.strptime(date, "%Y-%m-%d")  # a bad date fails before anything runs
    launch = prepare("nightly", recipe, input_patterns, output_prefix, beam_args)
    fingerprints = {url: fingerprint(url) for url in launch.shard_urls}
    if launch.dry_run:
        plan = Ledger.load(launch.prefix).plan(fingerprints, recipe.hash(), reprocess)
        job = start(launch, plan.todo or launch.shard_urls, date, [])
        return NightlyResult(plan, job)
    run_id = new_run_id()
    lease = take_prefix(launch, run_id)
    try:
        ledger = Ledger.load(launch.prefix)
        plan = ledger.plan(fingerprints, recipe.hash(), reprocess)
    except BaseException:
        lease.release()
        raise
    if not plan.todo:
        lease.release()
        return NightlyResult(plan, None)
    job = start_holding(launch, lease, plan.todo, run_id, date, ledger.key_indexes(recipe.hash()))
    return NightlyResult(plan, job)


def format_plan(plan: Plan) -> str:
    reasons = Counter(plan.reasons.values())
    lines = [f"shards      {len(plan.todo)} to process"
             + (f" ({', '.join(f'{k} {v}' for k, v in sorted(reasons.items()))})" if reasons else "")
             + f", {len(plan.done)} already done"]
    if plan.pending_recipe:
        lines.append(f"pending     {len(plan.pending_recipe)} shards were processed under another recipe "
                     f"only; rerun with --reprocess changed-recipe to process them under this one")
    if plan.failed:
        lines.append(f"failed      {len(plan.failed)} shards could not be read before and have not changed; "
                     f"--reprocess failed tries them again")
    return "\n".join(lines)
