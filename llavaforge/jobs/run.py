"""Launch a job on a Beam runner (DirectRunner by default, any runner via Beam flags).

Order, for `run` and `nightly` alike:
1. Beam options checked (refused modes) and inputs matched;
2. the output prefix checked: not a file, no overlap with any input, empty or llavaforge's
   (nothing is touched before this passes; a dry run prints the graph and stops here);
3. the prefix claimed and its lease taken; run folders of earlier jobs that are not
   published (crashed) or no longer published (superseded) removed;
4. the run folder started and the graph built with `Publish` as its last step, which verifies
   and commits the folder from inside the job, then removes the images' bytes the job staged
   (a job that fails leaves them, like its run folder, to the next job on the prefix);
5. run. A driver that waits keeps the lease alive and reports what the job published; one
   whose runner does not wait (templates) leaves the lease to the job.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import time
import uuid
from dataclasses import dataclass
from typing import Any, Iterator, Optional, Sequence

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions, TestOptions

from llavaforge import __version__, progress
from llavaforge.config.recipe import Recipe
from llavaforge.jobs import lease as leases
from llavaforge.jobs.ledger import Ledger, RunEntry, fingerprint
from llavaforge.jobs.progress_display import ProgressMonitor
from llavaforge.jobs.prefix import OutputPrefix
from llavaforge.jobs.publish import Publication, Publish, write_dataset_card
from llavaforge.pipelines.build import build_pipeline
from llavaforge.runners.metrics import model_metrics, stage_metrics
from llavaforge.runners.options import cores_shared_between, local_workers, pipeline_options
from llavaforge.schemas.layout import (KEYS_DIR, METRICS_FILE, RUN_MARKER, STATS_FILE, progress_folder, run_folder,
                                       staging_folder)
from llavaforge.storage import join, json_bytes, read_json, write_atomic
from llavaforge.transforms.read import match_inputs

log = logging.getLogger(__name__)


def new_run_id() -> str:
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + "-" + uuid.uuid4().hex[:8]


@dataclass
class Launch:
    """A job whose inputs and output have been checked; nothing is written yet."""

    kind: str  # run | nightly
    recipe: Recipe
    inputs: list[str]
    shard_urls: list[str]
    prefix: OutputPrefix
    options: PipelineOptions

    @property
    def dry_run(self) -> bool:
        return bool(self.options.view_as(TestOptions).dry_run)


@dataclass
class JobResult:
    run_id: str
    run_dir: str  # URL of the run folder
    entry: Optional[RunEntry]  # the ledger entry; None when the runner did not wait (the job publishes itself)
    stats: Optional[dict[str, Any]]  # the run's stats.json (+ "models"); None when detached
    graph: str = ""  # dry runs: the job graph, nothing run


def prepare(kind: str, recipe: Recipe, inputs: Sequence[str], output: str, beam_args: Sequence[str] = (),
            shard_urls: Optional[list[str]] = None) -> Launch:
    """Steps 1-2: raises RunnerOptionError, InputError or OutputError before anything is written."""
    options = pipeline_options(beam_args)
    shard_urls = shard_urls if shard_urls is not None else match_inputs(inputs, recipe.read)
    prefix = OutputPrefix.of(output)
    prefix.check_writable(kind, inputs, shard_urls)
    return Launch(kind, recipe, list(inputs), shard_urls, prefix, options)


def take_prefix(launch: Launch, run_id: str) -> leases.Lease:
    """Step 3: claim the prefix, take its lease, remove what earlier jobs left unpublished."""
    launch.prefix.claim(launch.kind)
    lease = leases.acquire(launch.prefix, run_id)
    try:
        ledger = Ledger.load(launch.prefix)
        remove_leftovers(launch.prefix, ledger)
        write_dataset_card(launch.prefix, ledger)
    except BaseException:
        lease.release()
        raise
    return lease


def remove_leftovers(prefix: OutputPrefix, ledger: Ledger) -> None:
    """Run folders no ledger entry publishes (crashed jobs, replaced outputs), key indexes of
    runs without an entry, and what running jobs leave while they run (progress counters,
    staged image bytes): only ever llavaforge's own files (`OutputPrefix.remove_run_folder`)."""
    published = set(ledger.published_folders())
    for folder in prefix.run_folders():
        if folder not in published:
            log.info("removing %s/%s: not published (crashed job or replaced output)", prefix.url, folder)
            prefix.remove_run_folder(folder)
    committed = {r.keys_index for r in ledger.runs}
    for path in prefix.fs.glob(prefix.path_of(f"{KEYS_DIR}/run-*.parquet")):
        relative = path[len(prefix.root) + 1:]
        if relative not in committed:
            prefix.fs.rm_file(path)
    prefix.remove_progress()
    prefix.remove_staging()


def resource_hints(applied) -> dict[str, str]:
    """A transform's resource hints by short name (`accelerator`, `min_ram_bytes`)."""
    return {urn.rsplit(":", 2)[-2]: value.decode() for urn, value in applied.resource_hints.items()}


def describe_graph(pipeline: beam.Pipeline) -> str:
    """The stages of a built graph (two levels), each with the resource hints it sets."""
    lines = ["job graph (dry run: nothing was run and the output was not touched):"]

    def walk(applied, depth: int) -> None:
        for part in applied.parts:
            hints = resource_hints(part)
            shown = "  ".join(f"{k}={v}" for k, v in sorted(hints.items())) if hints != resource_hints(applied) else ""
            if depth < 2:
                lines.append(f"{'  ' * (depth + 1)}{part.full_label}" + (f"   [{shown}]" if shown else ""))
            walk(part, depth + 1)

    walk(pipeline._current_transform(), 0)  # noqa: SLF001 -- the root of the graph
    return "\n".join(lines)


@contextlib.contextmanager
def _beam_pipeline(options: PipelineOptions) -> Iterator[beam.Pipeline]:
    """A pipeline whose local folder is removed however the block ends: Beam makes the folder when
    it makes the pipeline and removes it only at the end of a run, so every dry run, and every
    graph that failed to build, left one in the temporary folder."""
    pipeline = beam.Pipeline(options=options)
    try:
        yield pipeline
    finally:
        shutil.rmtree(pipeline.local_tempdir, ignore_errors=True)


def start(launch: Launch, shard_urls: list[str], date: str = "",
          published_keys: Optional[list[str]] = None, lease: Optional[leases.Lease] = None,
          run_id: Optional[str] = None) -> JobResult:
    """Steps 4-5 for the shards given (all matched shards for `run`, the plan's for `nightly`)."""
    run_id = run_id or new_run_id()
    recipe, prefix = launch.recipe, launch.prefix
    ledger = Ledger.load(prefix)
    folder = run_folder(run_id, date or None)
    run_dir = prefix.url_of(folder)
    run_info = {"llavaforge_version": __version__, "run_id": run_id, "recipe_hash": recipe.hash(),
                "preset": recipe.preset, "inputs_patterns": launch.inputs, "input_shards": len(shard_urls),
                "started_at": time.time()}
    publication = Publication(
        prefix=prefix.url, kind=launch.kind, seq=ledger.next_seq, run_id=run_id, date=date,
        recipe_hash=recipe.hash(), output=folder, started_at=run_info["started_at"],
        fingerprints={} if launch.dry_run else {url: fingerprint(url) for url in shard_urls}, lease=lease,
        superseded=tuple(ledger.published_folders()) if launch.kind == "run" else ())
    with _beam_pipeline(launch.options) as pipeline:
        # Progress is shown (and so reported by the workers) unless the command line is quiet.
        showing = not launch.dry_run and logging.getLogger("llavaforge").isEnabledFor(logging.INFO)
        progress_url = prefix.url_of(progress_folder(run_id)) if showing else None
        with progress.reporting_to(progress_url):
            stats = build_pipeline(pipeline, recipe, shard_urls, run_dir, run_info, published_keys,
                                   staging=prefix.url_of(staging_folder(run_id)))
        _ = stats | "Publish" >> Publish(publication)
        if launch.dry_run:
            if type(pipeline.runner).__name__ == "DataflowRunner":  # however the flag spelt it
                pipeline.run()  # Dataflow translates the graph and stops before submitting it
            return JobResult(run_id, run_dir, None, None, describe_graph(pipeline))
        write_atomic(join(run_dir, RUN_MARKER), json_bytes({"run_id": run_id, "kind": launch.kind,
                                                              "started_at": run_info["started_at"]}))
        with leases.keep_alive(lease) if lease is not None else contextlib.nullcontext(), \
                ProgressMonitor(progress_url, len(shard_urls)) if showing else contextlib.nullcontext(), \
                cores_shared_between(local_workers(launch.options)):
            result = pipeline.run()
            result.wait_until_finish()
    if progress_url:
        with contextlib.suppress(OSError):  # best effort: status never depends on progress files
            prefix.remove_progress(run_id)
    entry = Ledger.load(prefix).entry_of(run_id)
    if entry is None:
        # The runner returned without running the job here (a template launch): the job
        # publishes and releases the lease itself when it finishes.
        if lease is not None:
            lease.refresh(leases.DETACHED_TTL_S)
        return JobResult(run_id, run_dir, None, None)
    stats_json = read_json(join(run_dir, STATS_FILE)) or {}
    metrics = {"models": model_metrics(result), "stages": stage_metrics(result)}
    stats_json.update(metrics)
    # Beside stats.json, not in it: stats.json is part of what was verified and published.
    write_atomic(join(run_dir, METRICS_FILE), json_bytes(metrics))
    return JobResult(run_id, run_dir, entry, stats_json)


def run(recipe: Recipe, inputs: Sequence[str], output: str, beam_args: Sequence[str] = ()) -> JobResult:
    """`llavaforge run`: process every matched shard; the output prefix then publishes this run
    (the previous output stays published until this one is complete and verified)."""
    launch = prepare("run", recipe, inputs, output, beam_args)
    if launch.dry_run:
        return start(launch, launch.shard_urls)
    run_id = new_run_id()
    lease = take_prefix(launch, run_id)
    return start_holding(launch, lease, launch.shard_urls, run_id)


def start_holding(launch: Launch, lease: leases.Lease, shard_urls: list[str], run_id: str, date: str = "",
                  published_keys: Optional[list[str]] = None) -> JobResult:
    """`start` with the prefix's lease held: released here when the job failed or published
    while this driver waited; left to the job when it runs detached."""
    try:
        result = start(launch, shard_urls, date, published_keys, lease, run_id)
    except BaseException:
        lease.release()
        raise
    if result.entry is not None:
        lease.release()
    return result
