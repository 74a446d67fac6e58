"""SIMULATED scaling: the pipeline's cost per image and peak memory as the work grows, with
device stand-ins whose time is divided by `--speedup` (the pipeline's own cost is what is
measured), on the realistic workload with 5% near-duplicate images (near-dedup on) and 10% of
conversations asking one shared question (question dedup has work).

    .venv/bin/python bench/scaling.py --images 1000 10000 [50000] [--speedup 100]

Each size runs in a fresh process (in-process DirectRunner); prints seconds per image, peak RSS
and both relative to the smallest size.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent


def one_size(images: int, speedup: float) -> dict:
    os.environ["STANDIN_SPEEDUP"] = str(speedup)  # read when the stand-ins are imported
    sys.path.insert(0, str(BENCH))
    import pipeline_standin
    import workload
    from llavaforge.config.recipe import load_recipe
    from llavaforge.jobs.run import run

    pipeline_standin.patch_models()
    work = Path(tempfile.mkdtemp(prefix="llavaforge-scaling-"))
    shards = pipeline_standin.build_shards(work, images, near_duplicates=0.05)
    recipe = load_recipe(None, {**workload.RECIPE, "dedup.near.enabled": True})
    start = time.time()
    job = run(recipe, shards, str(work / "out"), ["--direct_running_mode=in_memory"])
    wall = time.time() - start
    shutil.rmtree(work, ignore_errors=True)
    return {"images": images, "wall_s": wall, "written": job.stats["images_written"],
            "near_duplicates": job.stats["duplicates"],
            "duplicate_questions": job.stats["rejects"].get("question_dedup", {}).get("duplicate_question", 0),
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--images", type=int, nargs="+", default=[1000, 10000])
    p.add_argument("--speedup", type=float, default=100.0)
    p.add_argument("--_one", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args._one:
        print(json.dumps(one_size(args._one, args.speedup)))
        return
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(BENCH), os.environ.get("PYTHONPATH", "")])}
    rows = []
    for images in args.images:
        done = subprocess.run([sys.executable, __file__, "--_one", str(images), "--speedup", str(args.speedup)],
                              capture_output=True, text=True, env=env)
        if done.returncode:
            raise SystemExit(done.stderr[-3000:])
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    base = rows[0]
    print(f"SIMULATED (stand-ins, device time / {args.speedup:g}); in-process DirectRunner")
    print(f"{'images':>8}{'wall s':>9}{'ms/image':>10}{'vs first':>9}{'peak RSS MB':>13}{'vs first':>9}"
          f"{'written':>9}{'dups':>7}{'dup questions':>15}")
    for r in rows:
        per = 1000 * r["wall_s"] / r["images"]
        print(f"{r['images']:>8}{r['wall_s']:>9.1f}{per:>10.1f}{per / (1000 * base['wall_s'] / base['images']):>8.2f}x"
              f"{r['peak_rss_mb']:>13.0f}{r['peak_rss_mb'] / base['peak_rss_mb']:>8.2f}x{r['written']:>9}"
              f"{r['near_duplicates']:>7}{r['duplicate_questions']:>15}")


if __name__ == "__main__":
    main()
