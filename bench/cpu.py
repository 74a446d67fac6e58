"""CPU benchmark: `llavaforge run` against the plain-loop floor, and 1 vs 2 worker processes.

Builds synthetic JPEG tar shards, then runs, each in a fresh Python process so imports,
model loads and peak memory count the same way for every variant:

  loop        the same stage functions (read, decode, dedup, annotate and LLM handlers, checks,
              shard writers) called in a plain Python loop in one process: the overhead floor
  pipeline-1  `llavaforge run` on the in-process DirectRunner
  pipeline-2  `llavaforge run` on the DirectRunner's multi-processing mode with 2 SDK worker processes
  service-2   `llavaforge run` on llavaforge's portable job service with 2 SDK worker processes
              (forked from its zygote; the service's start counts in the wall time)

and prints one table: records/s (inputs per wall second), ratio to the loop and to one
process, start-up time (the same variant on a few images) and the steady-state rate after
it, peak RSS, and the loop's time per stage. Raw numbers go to a JSON file.

    python bench/cpu.py                       # tiny preset, 96 images in 4 shards
    python bench/cpu.py --preset offline      # the packaged real models (slower)
    python bench/cpu.py --images 1000 --shards 8 --repeats 3   # each target ratio per round, and its median
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parent.parent


def build_shards(folder: Path, images: int, shards: int, side: int) -> list[str]:
    rng = np.random.default_rng(0)
    paths = []
    per_shard = -(-images // shards)
    for s in range(shards):
        path = folder / f"bench-{s:03d}.tar"
        with tarfile.open(path, "w") as tar:
            for i in range(s * per_shard, min(images, (s + 1) * per_shard)):
                small = rng.integers(0, 256, size=(12, 16, 3), dtype=np.uint8)
                out = io.BytesIO()
                Image.fromarray(small).resize((side, side * 3 // 4), Image.Resampling.BICUBIC).save(
                    out, format="JPEG", quality=90)
                for name, data in ((f"{i:06d}.jpg", out.getvalue()), (f"{i:06d}.txt", b"a photo of an object")):
                    info = tarfile.TarInfo(name)
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
        paths.append(str(path))
    return paths


def chunks(items: list, size: int):
    for i in range(0, len(items), size):
        yield items[i:i + size]


def plain_loop(shards: list[str], output: str, overrides: dict) -> dict:
    """Every stage's own functions, called in order in this process; seconds per stage."""
    from llavaforge.models.llm.backends import make_llm_handler
    from llavaforge.prompts.library import load_library
    from llavaforge.config.recipe import load_recipe
    from llavaforge.schemas.record import Conversation, Reject
    from llavaforge.transforms.annotate import make_handler, with_annotations, with_source_captions
    from llavaforge.transforms.check import _CheckFn
    from llavaforge.transforms.decode import decode_sample
    from llavaforge.transforms.dedup import choose_kept, duplicate_reject
    from llavaforge.transforms.read import ReadShardFn
    from llavaforge.transforms.synthesize import generated, outcome, plan_requests
    from llavaforge.transforms.write import shard_count, shard_of, write_image_shard, write_reject_shard

    recipe = load_recipe(None, overrides)
    seconds: dict[str, float] = defaultdict(float)
    rejects: list[Reject] = []
    os.makedirs(output, exist_ok=False)  # a fresh folder per measurement

    def timed(stage, fn, *args):
        start = time.perf_counter()
        result = fn(*args)
        seconds[stage] += time.perf_counter() - start
        return result

    records, inputs = [], 0
    reader = ReadShardFn(recipe.read)
    for url in shards:
        for item in timed("read", lambda u: list(reader.read_shard(u)), url):
            inputs += 1
            out = item if isinstance(item, Reject) else timed("decode", decode_sample, item, recipe.decode, None)
            (rejects if isinstance(out, Reject) else records).append(out)

    def dedup(found):
        by_sha = defaultdict(list)
        for r in found:
            by_sha[r.image.sha256].append(r)
        kept = []
        for group in by_sha.values():
            first, dropped = choose_kept(group)
            kept.append(first)
            rejects.extend(duplicate_reject(r, first) for r in dropped)
        return kept

    records = timed("dedup", dedup, records)

    def annotate(found):
        found = [with_source_captions(r) for r in found]
        for role, config in recipe.annotate.active_roles():
            handler = make_handler(role, config)
            model = handler.load_model()
            found = [with_annotations(res.example, role, res.inference)
                     for batch in chunks(found, config.max_batch_size)
                     for res in handler.run_inference(batch, model)]
        return found

    records = timed("annotate", annotate, records)

    synth = recipe.synthesize
    if synth.enabled:
        def synthesize(found):
            library = load_library(synth.prompts_dir)
            handler = make_llm_handler(synth, recipe.seed)
            model = handler.load_model()
            requests = [q for r in found for q in plan_requests(r, synth, library, recipe.seed)]
            by_key = defaultdict(list)
            for batch in chunks(requests, synth.max_batch_size):
                for result in handler.run_inference(batch, model):
                    key, result_outcome = outcome(generated(result), synth, library)
                    by_key[key].append(result_outcome)
            kept = []
            for r in found:
                conversations = [o for o in by_key[r.key] if isinstance(o, Conversation)]
                rejects.extend(o for o in by_key[r.key] if isinstance(o, Reject))
                if conversations:
                    kept.append(r.replace(conversations=conversations))
                else:
                    rejects.append(Reject.of(r.key, r.source, "synthesize", "no_conversation"))
            return kept

        records = timed("synthesize", synthesize, records)
        checker = _CheckFn(recipe.check, recipe.synthesize.prompts_dir)
        checker.setup()

        def check(found):
            kept = []
            for r in found:
                for out in checker.process_element(r):
                    (rejects if isinstance(out, Reject) else kept).append(out)
            return kept

        records = timed("check", check, records)

    def write(found):
        shards_out = defaultdict(list)
        n = shard_count(len(found), recipe.write.images_per_shard)
        for r in found:
            shards_out[shard_of(r.key, n)].append(r)
        for index, items in shards_out.items():
            write_image_shard(output, index, items)
        write_reject_shard(output, 0, rejects)

    timed("write", write, records)
    return {"inputs": inputs, "images_written": len(records), "seconds_per_stage": dict(seconds)}


def run_variant(name: str, shards: list[str], output: str, overrides: dict) -> dict:
    """One variant in a fresh process: wall seconds, inputs, peak RSS of it and its children."""
    sets = [a for k, v in overrides.items() for a in ("--set", f"{k}={json.dumps(v)}")]
    if name == "loop":
        cmd = [sys.executable, __file__, "--_loop", json.dumps({"shards": shards, "output": output,
                                                               "overrides": overrides})]
    else:
        cmd = [sys.executable, "-m", "llavaforge.cli", "-q", "run", *[a for s in shards for a in ("--input", s)],
               "--output", output, *sets]
    from llavaforge.runners.portable import job_service

    if name == "pipeline-2":
        cmd += ["--direct_running_mode=multi_processing", "--direct_num_workers=2"]
    # The job service's own start (and its zygote's imports) count in the variant's wall time.
    start = time.perf_counter()
    with job_service(2) if name == "service-2" else contextlib.nullcontext() as service:
        if service is not None:
            cmd += service.flags
        # Through a fresh wrapper process: its RUSAGE_CHILDREN peak is this variant's largest
        # process, not an earlier variant's (the job service's workers are not its children).
        done = subprocess.run([sys.executable, __file__, "--_measure", *cmd], capture_output=True, text=True, cwd=REPO)
        wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{name} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    peak_kb = int(done.stderr.strip().splitlines()[-1].split("=")[1])
    result = {"wall_s": wall, "peak_rss_mb": peak_kb / 1024}
    if name == "loop":
        result.update(json.loads(done.stdout.strip().splitlines()[-1]))
    else:
        from llavaforge.jobs.ledger import published_run_dir

        stats = json.loads(Path(published_run_dir(output), "stats.json").read_text())
        result.update(inputs=stats["inputs"], images_written=stats["images_written"])
    return result


VARIANTS = ("loop", "pipeline-1", "pipeline-2", "service-2")
# The ratios the targets name: (label, variant, against, rate), rate "wall" or "steady".
TARGET_RATIOS = (
    ("in-process vs loop, wall", "pipeline-1", "loop", "wall"),
    ("in-process vs loop, steady", "pipeline-1", "loop", "steady"),
    ("2 job-service workers vs 1 process, wall", "service-2", "pipeline-1", "wall"),
    ("2 job-service workers vs 1 process, steady", "service-2", "pipeline-1", "steady"),
    ("multi-processing vs 1 process, wall", "pipeline-2", "pipeline-1", "wall"),
    ("multi-processing vs 1 process, steady", "pipeline-2", "pipeline-1", "steady"),
)


def measure_round(work: Path, shards: list[str], small: list[str], overrides: dict) -> dict:
    """Every variant on the full shards, then on the few-image shards (whose wall time is
    start-up: imports, worker processes, model loads, so the difference is the steady-state rate
    a long run approaches)."""
    results = {name: run_variant(name, shards, str(work / name), overrides) for name in VARIANTS}
    startup = {name: run_variant(name, small, str(work / f"{name}-small"), overrides) for name in VARIANTS}
    for name, r in results.items():
        r["startup_wall_s"] = startup[name]["wall_s"]
        steady_s = r["wall_s"] - startup[name]["wall_s"]
        # Too few images to outlast the start-up's own spread: no steady state to speak of.
        r["steady_records_s"] = (r["inputs"] - startup[name]["inputs"]) / steady_s if steady_s > 0 else math.nan
        r["records_s"] = r["inputs"] / r["wall_s"]
    return results


def print_round(results: dict) -> None:
    print(f"{'variant':<12}{'records/s':>10}{'vs loop':>9}{'vs 1 proc':>11}{'wall s':>8}{'start-up s':>11}"
          f"{'steady rec/s':>14}{'vs loop':>9}{'vs 1 proc':>11}{'peak RSS MB':>13}")
    rate = {name: r["records_s"] for name, r in results.items()}
    steady = {name: r["steady_records_s"] for name, r in results.items()}
    for name, r in results.items():
        print(f"{name:<12}{rate[name]:>10.2f}{rate[name] / rate['loop']:>8.2f}x{rate[name] / rate['pipeline-1']:>10.2f}x"
              f"{r['wall_s']:>8.1f}{r['startup_wall_s']:>11.1f}{steady[name]:>14.2f}"
              f"{steady[name] / steady['loop']:>8.2f}x{steady[name] / steady['pipeline-1']:>10.2f}x"
              f"{r['peak_rss_mb']:>13.0f}")
    print("loop seconds per stage: " + ", ".join(
        f"{k} {v:.2f}" for k, v in results["loop"]["seconds_per_stage"].items()), flush=True)


def target_ratios(rounds: list[dict]) -> dict[str, list[float]]:
    """Each target's ratio in every round: both rates of a ratio come from the same round."""
    key = {"wall": "records_s", "steady": "steady_records_s"}
    return {label: [r[variant][key[rate]] / r[against][key[rate]] for r in rounds]
            for label, variant, against, rate in TARGET_RATIOS}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--images", type=int, default=96)
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--side", type=int, default=256, help="image width in pixels")
    parser.add_argument("--repeats", type=int, default=1,
                        help="rounds of every variant, one after the other; prints each target ratio "
                             "per round and its median (a shared VM's speed drifts between runs)")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="FIELD=VALUE",
                        help="recipe override for every variant (YAML value)")
    parser.add_argument("--out", default="bench/results/cpu.json")
    parser.add_argument("--_loop", help=argparse.SUPPRESS)
    parser.add_argument("--_measure", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._measure:
        code = subprocess.run(args._measure).returncode
        print(f"PEAK_RSS_KB={resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}", file=sys.stderr)
        sys.exit(code)
    if args._loop:
        spec = json.loads(args._loop)
        print(json.dumps(plain_loop(spec["shards"], spec["output"], spec["overrides"])))
        return

    import yaml

    overrides = {"preset": args.preset, **{k: yaml.safe_load(v) for k, v in (s.split("=", 1) for s in args.sets)}}
    print(f"preset {args.preset}: {args.images} images of {args.side} px in {args.shards} shards; "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores", flush=True)
    rounds = []
    with tempfile.TemporaryDirectory(prefix="llavaforge-bench-cpu-") as folder:  # the shards and outputs: gone after
        work = Path(folder)
        shards = build_shards(work, args.images, args.shards, args.side)
        # Build/convert the preset's models once, outside the measurements.
        run_variant("pipeline-1", shards[:1], str(work / "warmup"), overrides)
        small_folder = work / "small"
        small_folder.mkdir()
        small = build_shards(small_folder, 2 * args.shards, args.shards, args.side)
        for index in range(args.repeats):
            round_folder = work / f"round-{index}"
            round_folder.mkdir()
            rounds.append(measure_round(round_folder, shards, small, overrides))
            if args.repeats > 1:
                print(f"round {index + 1} of {args.repeats}")
            print_round(rounds[-1])

    ratios = target_ratios(rounds)
    if args.repeats > 1:
        print(f"{'target ratio':<46}{'median':>8}  per round")
        for label, values in ratios.items():
            measured = [v for v in values if not math.isnan(v)]
            median = statistics.median(measured) if measured else math.nan
            print(f"{label:<46}{median:>7.2f}x  " + " ".join(f"{v:.2f}x" for v in values))
    out = REPO / args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"preset": args.preset, "images": args.images, "rounds": rounds,
                               "target_ratios": ratios}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
