"""Run the pipeline on a Beam runner: DirectRunner by default, any runner via Beam flags."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any, Optional, Sequence

import apache_beam as beam
import fsspec

from llavaforge import __version__
from llavaforge.pipelines.build import build_pipeline
from llavaforge.recipe import Recipe
from llavaforge.runners.metrics import model_metrics
from llavaforge.runners.options import pipeline_options, share_cores_between_workers
from llavaforge.transforms.read import match_inputs
from llavaforge.transforms.write import METRICS_FILE, STATS_FILE, clear_output, join


def new_run_id() -> str:
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + "-" + uuid.uuid4().hex[:8]


def read_stats(output: str) -> dict[str, Any]:
    with fsspec.open(join(output, STATS_FILE), "r") as f:
        return json.load(f)


def run(recipe: Recipe, inputs: Sequence[str], output: str, beam_args: Sequence[str] = (),
        run_id: Optional[str] = None, shard_urls: Optional[list[str]] = None,
        published_keys: Optional[list[str]] = None) -> dict[str, Any]:
    """Match inputs, clear the output prefix, run to completion; returns stats.json.
    `published_keys`: see `build_pipeline`."""
    options = pipeline_options(beam_args)  # refused options fail before anything is touched
    shard_urls = shard_urls if shard_urls is not None else match_inputs(inputs, recipe.read)
    run_info = {
        "llavaforge_version": __version__,
        "run_id": run_id or new_run_id(),
        "recipe_hash": recipe.hash(),
        "preset": recipe.preset,
        "inputs_patterns": list(inputs),
        "input_shards": len(shard_urls),
        "started_at": time.time(),
    }
    clear_output(output)
    share_cores_between_workers(options)
    pipeline = beam.Pipeline(options=options)
    build_pipeline(pipeline, recipe, shard_urls, output, run_info, published_keys)
    result = pipeline.run()
    result.wait_until_finish()
    stats = read_stats(output)
    # Beside stats.json, not in it: stats.json is the run's completion marker, written once.
    stats["models"] = model_metrics(result)
    with fsspec.open(join(output, METRICS_FILE), "w") as f:
        json.dump(stats["models"], f, indent=2, sort_keys=True)
    return stats
