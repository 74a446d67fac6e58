"""Compose the stages into one Beam graph from a resolved recipe: each stage gets its own
section, and only stages that load a model on a GPU carry the GPU resource hints."""

from __future__ import annotations

from typing import Any, Optional

import apache_beam as beam

from llavaforge import __version__
from llavaforge.config.prompts import prompt_folder
from llavaforge.config.recipe import Recipe, RecipeError
from llavaforge.prompts.library import PromptError
from llavaforge.prompts.vision import load_vision_prompt
from llavaforge.runners.dataflow import gpu_stage_hints, with_gpu_hints
from llavaforge.schemas.record import Provenance
from llavaforge.transforms.annotate import Annotate
from llavaforge.transforms.check import Check, checks_enabled
from llavaforge.transforms.decode import Decode
from llavaforge.transforms.dedup import ExactDedup, NearDedup
from llavaforge.transforms.published import DropPublished
from llavaforge.transforms.question_dedup import QuestionDedup
from llavaforge.transforms.read import ReadShards
from llavaforge.transforms.review import HoldForReview
from llavaforge.transforms.staging import StageImages
from llavaforge.transforms.synthesize import Synthesize
from llavaforge.transforms.verify import Verify
from llavaforge.transforms.write import WriteOutputs


def _annotate(recipe: Recipe, hints: dict[str, str]) -> beam.PTransform:
    dense = recipe.annotate.dense_captioner
    if dense is not None and dense.enabled:
        try:
            load_vision_prompt("dense_caption", dense.prompt_file)  # its handler loads it on the workers
        except PromptError as e:
            raise RecipeError(f"recipe field `annotate.dense_captioner.prompt_file`: {e}") from e
    return Annotate(recipe.annotate, gpu_hints=hints)


def _synthesize(recipe: Recipe, hints: dict[str, str]) -> beam.PTransform:
    try:
        stage = Synthesize(recipe.synthesize, seed=recipe.seed)
    except PromptError as e:
        raise RecipeError(f"recipe field `synthesize.tasks` / `synthesize.prompts_dir` "
                          f"({prompt_folder(recipe.synthesize.prompts_dir)}): {e}") from e
    return with_gpu_hints(stage, hints) if recipe.synthesize.on_gpu else stage


def _verify(recipe: Recipe, hints: dict[str, str]) -> beam.PTransform:
    try:
        stage = Verify(recipe.verify)
    except PromptError as e:
        raise RecipeError(f"recipe field `verify.prompt_file`: {e}") from e
    return with_gpu_hints(stage, hints) if recipe.verify.on_gpu else stage


def enabled_stages(recipe: Recipe, hints: Optional[dict[str, str]] = None) -> list[tuple[str, beam.PTransform]]:
    """The stages between exact dedup and write that the recipe turns on, in flow order.
    Each takes records and returns `(records, rejects)`. `Annotate` always runs (it turns text
    that came with an image into captions); checks, the VLM verifier and question dedup look at
    generated conversations, so they run only when synthesis does."""
    hints = hints or {}
    stages: list[tuple[str, beam.PTransform]] = []
    if recipe.dedup.near.enabled:
        stages.append(("NearDedup", NearDedup(recipe.dedup.near.max_distance)))
    stages.append(("Annotate", _annotate(recipe, hints)))
    if recipe.synthesize.enabled:
        stages.append(("Synthesize", _synthesize(recipe, hints)))
        if checks_enabled(recipe.check):
            stages.append(("Check", Check(recipe.check, recipe.synthesize.prompts_dir)))
        if recipe.verify.enabled:
            stages.append(("Verify", _verify(recipe, hints)))
        if recipe.check.questions.enabled:
            stages.append(("QuestionDedup", QuestionDedup(recipe.check.questions, recipe.seed)))
        if recipe.write.flagged == "review":
            stages.append(("HoldForReview", HoldForReview()))
    return stages


def build_pipeline(pipeline: beam.Pipeline, recipe: Recipe, shard_urls: list[str], output: str,
                   run_info: dict[str, Any], published_keys: Optional[list[str]] = None,
                   staging: Optional[str] = None):
    """Add the whole flow to `pipeline`, writing into the run folder `output`; returns the
    one-element PCollection of the run's stats (emitted once stats.json is written).

    `published_keys`: key index files of earlier runs (nightly); images found there are
    counted as duplicates instead of written again. None: no such filter.
    `staging`: a folder for the images' bytes from decode to write, so that records cross
    stage boundaries without them. None: records carry their bytes."""
    provenance = Provenance(version=__version__, recipe_hash=recipe.hash(), run_id=run_info["run_id"])
    samples, read_rejects = pipeline | "ReadShards" >> ReadShards(shard_urls, recipe.read)
    records, decode_rejects = samples | "Decode" >> Decode(recipe.decode, provenance)
    if staging is not None:
        records = records | "StageImages" >> StageImages(staging)
    records, duplicates = records | "Dedup" >> ExactDedup()
    rejects = [read_rejects, decode_rejects, duplicates]
    if published_keys is not None:
        records, republished = records | "DropPublished" >> DropPublished(published_keys)
        rejects.append(republished)
    for label, stage in enabled_stages(recipe, gpu_stage_hints(pipeline.options)):
        if label == "Synthesize":
            # Breaks fusion between the vision and the LLM stage: a retry in one does not
            # rerun the other, and each scales on its own workers.
            records = records | "VisionToLLM" >> beam.Reshuffle()
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
