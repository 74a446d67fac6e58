"""SIMULATED: does the pipeline keep its slowest model busy? The realistic workload
(bench/workload.py) through the whole pipeline with every model role replaced by a device
stand-in (bench/standin.py: sleeps for the per-batch time measured on one H100), in-process
and with worker processes, against the LLM stand-in's standalone rate (full batches back to
back), computed from the same per-batch model in the same run.

    .venv/bin/python bench/pipeline_standin.py [--images 1000] [--workers 2]

Prints, per variant: wall time, samples written, samples/s end to end, the ratio to the
standalone LLM rate, the LLM's busy share of the wall time and of its own active window, and
the seconds before its first batch and after its last (the CPU work that does not overlap it).
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import io
import json
import os
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
import standin  # noqa: E402
import workload  # noqa: E402

from llavaforge.runners.portable import job_service  # noqa: E402


def build_shards(folder: Path, images: int, per_shard: int = 250, near_duplicates: float = 0.0) -> list[str]:
    """640x480 JPEG tar shards with a caption each; `near_duplicates` of the images are a
    re-encoded, slightly noisier copy of the image before them (near-dedup has work)."""
    rng = np.random.default_rng(0)
    width, height = workload.IMAGE_SIZE
    ramp = np.linspace(0, 255, width, dtype=np.float32)[None, :, None]
    paths = []
    for start in range(0, images, per_shard):
        path = folder / f"shard-{start // per_shard:04d}.tar"
        with tarfile.open(path, "w") as tar:
            pixels = None
            for i in range(start, min(images, start + per_shard)):
                if pixels is not None and rng.random() < near_duplicates:
                    pixels = np.clip(pixels.astype(np.int16) + rng.integers(-3, 4, pixels.shape), 0, 255).astype(np.uint8)
                else:
                    noise = rng.normal(0, 12, (height, width, 3)).astype(np.float32)
                    blocks = np.kron(rng.uniform(0.2, 1.0, (6, 8, 3)), np.ones((height // 6, width // 8, 1)))
                    pixels = np.clip(ramp * blocks + noise, 0, 255).astype(np.uint8)
                out = io.BytesIO()
                Image.fromarray(pixels).save(out, format="JPEG", quality=85)
                for name, data in ((f"{i:07d}.jpg", out.getvalue()), (f"{i:07d}.txt", b"a photograph")):
                    info = tarfile.TarInfo(name)
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
        paths.append(str(path))
    return paths


def standalone_llm_samples_per_s(samples: int = 4096, batch: int = 256) -> float:
    """Full batches of the workload's requests, back to back, through the stand-in's time model."""
    tasks = list(workload.TASK_WEIGHTS)
    lengths = [workload.new_tokens(tasks[i % len(tasks)], f"k{i}") for i in range(samples)]
    seconds = sum(standin.llm_batch_seconds(lengths[i:i + batch]) for i in range(0, samples, batch))
    return samples / seconds


def patch_models() -> None:
    from llavaforge.transforms import annotate, synthesize

    annotate.make_handler = standin.StandInVision
    synthesize.make_llm_handler = lambda c, seed=0: standin.StandInLlm(
        c.model, c.hf, c.max_new_tokens, c.sampling, seed, min_batch_size=c.min_batch_size,
        max_batch_size=c.max_batch_size)


def busy(log_dir: str, role: str) -> tuple[float, float, float, int]:
    """(busy seconds, first start, last end, items) of a role over every process."""
    spans = [json.loads(line) for path in glob.glob(f"{log_dir}/*.jsonl") for line in open(path)]
    spans = [s for s in spans if s["role"] == role]
    if not spans:
        return 0.0, 0.0, 0.0, 0
    return (sum(s["end"] - s["start"] for s in spans), min(s["start"] for s in spans), max(s["end"] for s in spans),
            sum(s["items"] for s in spans))


def busy_log_dir(work: Path, name: str) -> Path:
    """The variant's folder of busy intervals, in the environment the stand-ins (and the
    worker processes started after this) read."""
    log_dir = work / f"busy-{name}"
    log_dir.mkdir(exist_ok=True)
    os.environ["STANDIN_LOG_DIR"] = str(log_dir)
    return log_dir


def run_variant(name: str, shards: list[str], work: Path, beam_args: list[str]) -> dict:
    from llavaforge.config.recipe import load_recipe
    from llavaforge.jobs.run import run

    log_dir = busy_log_dir(work, name)
    recipe = load_recipe(None, dict(workload.RECIPE))
    start = time.time()
    job = run(recipe, shards, str(work / f"out-{name}"), beam_args)
    end = time.time()
    llm_busy, first, last, generated = busy(str(log_dir), "llm")
    return {"wall_s": end - start, "samples": job.stats["samples_written"], "images": job.stats["images_written"],
            "generated": generated, "llm_busy_s": llm_busy, "llm_window_s": last - first,
            "before_llm_s": first - start, "after_llm_s": end - last,
            "llm_batches": job.stats.get("models", {}).get("llavaforge_llm_standin", {}).get("mean_batch_size")}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--images", type=int, default=1000)
    p.add_argument("--workers", type=int, default=2)
    args = p.parse_args()
    os.environ["PYTHONPATH"] = os.pathsep.join([str(BENCH), os.environ.get("PYTHONPATH", "")])
    patch_models()
    with tempfile.TemporaryDirectory(prefix="llavaforge-standin-") as folder:  # the shards and outputs: gone after
        work = Path(folder)
        shards = build_shards(work, args.images)
        standalone = standalone_llm_samples_per_s()
        variants = {"in-process": None, f"{args.workers} processes": args.workers}
        print(f"SIMULATED (device stand-ins with H100 per-batch times): {args.images} images 640x480, "
              f"LLM standalone {standalone:.1f} samples/s")
        print(f"{'variant':<14}{'wall s':>8}{'generated':>10}{'written':>9}{'gen/s':>8}{'vs LLM alone':>14}"
              f"{'LLM busy/wall':>15}{'busy/window':>13}{'mean batch':>12}{'before LLM s':>14}{'after LLM s':>13}")
        for name, workers in variants.items():
            # Worker processes through Beam's portable job service.
            busy_log_dir(work, name.replace(" ", "-"))
            with job_service(workers) if workers else contextlib.nullcontext() as service:
                r = run_variant(name.replace(" ", "-"), shards, work, service.flags if service else [])
            rate = r["generated"] / r["wall_s"]
            print(f"{name:<14}{r['wall_s']:>8.1f}{r['generated']:>10}{r['samples']:>9}{rate:>8.2f}{rate / standalone:>13.2f}x"
                  f"{r['llm_busy_s'] / r['wall_s']:>14.0%}{r['llm_busy_s'] / max(r['llm_window_s'], 1e-9):>13.0%}"
                  f"{r['llm_batches'] or 0:>12}{r['before_llm_s']:>14.1f}{r['after_llm_s']:>13.1f}")


if __name__ == "__main__":
    main()
