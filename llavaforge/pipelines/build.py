"""Compose the stages of ARCHITECTURE.md into one Beam pipeline, from a recipe."""

from __future__ import annotations

from typing import Any, Optional

import apache_beam as beam

from llavaforge import __version__
from llavaforge.pipelines.published import DropPublished
from llavaforge.recipe import Recipe
from llavaforge.runners.dataflow import gpu_stage_hints, with_gpu_hints
from llavaforge.schemas.record import Provenance
from llavaforge.transforms.decode import Decode
from llavaforge.transforms.annotate import annotate_stage
from llavaforge.transforms.check import check_stage
from llavaforge.transforms.dedup import ExactDedup, near_dedup_stage
from llavaforge.transforms.question_dedup import question_dedup_stage
from llavaforge.transforms.read import ReadShards
from llavaforge.transforms.synthesize import synthesize_stage
from llavaforge.transforms.write import WriteOutputs


# Model stages: on Dataflow they carry the GPU resource hints, so only they run on GPU workers.
GPU_STAGES = ("Annotate", "Synthesize")


def enabled_stages(recipe: Recipe) -> list[tuple[str, beam.PTransform]]:
    """The stages between exact dedup and write that the recipe turns on, in flow order.
    Each takes records and returns `(records, rejects)`. Checks and question dedup look at
    generated conversations, so they run only when synthesis does."""
    stages = [("NearDedup", near_dedup_stage(recipe)), ("Annotate", annotate_stage(recipe))]
    synthesize = synthesize_stage(recipe)
    if synthesize is not None:
        stages += [("Synthesize", synthesize), ("Check", check_stage(recipe)),
                   ("QuestionDedup", question_dedup_stage(recipe))]
    return [(label, stage) for label, stage in stages if stage is not None]


def build_pipeline(pipeline: beam.Pipeline, recipe: Recipe, shard_urls: list[str], output: str,
                   run_info: dict[str, Any], published_keys: Optional[list[str]] = None):
    """Add the whole flow to `pipeline`; returns the one-element PCollection of run stats.

    `published_keys`: key index files of earlier runs (nightly); images found there are
    counted as duplicates instead of written again. None: no such filter."""
    provenance = Provenance(version=__version__, recipe_hash=recipe.hash(), run_id=run_info["run_id"])
    samples, read_rejects = pipeline | "ReadShards" >> ReadShards(shard_urls, recipe.read)
    records, decode_rejects = samples | "Decode" >> Decode(recipe.decode, provenance)
    records, duplicates = records | "Dedup" >> ExactDedup()
    rejects = [read_rejects, decode_rejects, duplicates]
    if published_keys is not None:
        records, republished = records | "DropPublished" >> DropPublished(published_keys)
        rejects.append(republished)
    hints = gpu_stage_hints(pipeline.options)
    for label, stage in enabled_stages(recipe):
        if label == "Synthesize":
            # Breaks fusion between the vision and the LLM stage: a retry in one does not
            # rerun the other, and each scales on its own workers.
            records = records | "VisionToLLM" >> beam.Reshuffle()
        if label in GPU_STAGES:
            stage = with_gpu_hints(stage, hints)
        records, stage_rejects = records | label >> stage
        rejects.append(stage_rejects)
    inputs = (
        (samples | "OneSample" >> beam.Map(lambda _: 1),
         read_rejects | "OneReadReject" >> beam.Map(lambda _: 1))
        | "AllInputs" >> beam.Flatten()
        | "CountInputs" >> beam.CombineGlobally(sum)
    )
    all_rejects = rejects | "AllRejects" >> beam.Flatten()
    return {"records": records, "rejects": all_rejects, "inputs": inputs} | "Write" >> WriteOutputs(
        output, recipe.write, run_info)
