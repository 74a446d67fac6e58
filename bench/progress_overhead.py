"""What live progress costs: the same run with progress on (the default) and off (`-q`),
alternated, best of N each, in one process per run.

    .venv/bin/python bench/progress_overhead.py [--images 600] [--repeats 3] [--preset tiny]

Progress on means every stage's worker counts its elements and writes a small JSON file every
2 s, and the driver reads them every 30 s (logs) or every second (a terminal). Prints both
wall times and their ratio.
"""

from __future__ import annotations

import argparse
import io
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parent.parent


def make_shards(folder: Path, images: int, per_shard: int = 100) -> list[str]:
    rng = np.random.default_rng(0)
    paths = []
    for start in range(0, images, per_shard):
        path = folder / f"shard-{start // per_shard:03d}.tar"
        with tarfile.open(path, "w") as tar:
            for i in range(start, min(images, start + per_shard)):
                out = io.BytesIO()
                Image.fromarray(rng.integers(0, 256, (96, 128, 3), dtype=np.uint8)).save(out, format="JPEG")
                info = tarfile.TarInfo(f"{i:06d}.jpg")
                info.size = out.tell()
                tar.addfile(info, io.BytesIO(out.getvalue()))
        paths.append(str(path))
    return paths


def timed_run(shards: list[str], output: str, quiet: bool, preset: str) -> float:
    args = [sys.executable, "-m", "llavaforge.cli", *(["-q"] if quiet else []), "run", "--output", output,
            "--set", "synthesize.tasks=[]", *(["--preset", preset] if preset else [])]
    for shard in shards:
        args += ["--input", shard]
    start = time.perf_counter()
    subprocess.run(args, cwd=REPO, check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--images", type=int, default=600)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--preset", default="tiny", help="vision preset ('' for none)")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        shards = make_shards(Path(tmp), args.images)
        times: dict[str, list[float]] = {"off": [], "on": []}
        for repeat in range(args.repeats):
            for mode in ("off", "on"):
                times[mode].append(timed_run(shards, f"{tmp}/out-{mode}-{repeat}", mode == "off", args.preset))
    best = {mode: min(values) for mode, values in times.items()}
    print(f"images {args.images}, preset {args.preset or 'none'}, {args.repeats} runs each")
    for mode in ("off", "on"):
        print(f"progress {mode:<3}  best {best[mode]:.2f} s  median {statistics.median(times[mode]):.2f} s")
    print(f"ratio on/off (best): {best['on'] / best['off']:.3f}")


if __name__ == "__main__":
    main()
