"""SIMULATED scaling: the pipeline's cost per image and peak memory as the work grows, with
device stand-ins whose time is divided by `--speedup` (the pipeline's own cost is what is
measured), on the realistic workload with 5% near-duplicate images (near-dedup on) and 10% of
conversations asking one shared question (question dedup has work).

    .venv/bin/python bench/scaling.py --images 1000 10000 [50000] [--speedup 100] [--workers 2 [--multi-processing]]
                                      [--shard-cache DIR]

Each size runs in a fresh process, on the in-process DirectRunner or, with `--workers N`, N SDK
worker processes: Beam's portable job service, or the DirectRunner's multi-processing mode
(`--multi-processing`); prints seconds per image, the peak RSS of the runner (the driver, or the
job service, whichever is larger: the local runners' buffers of whole PCollections are theirs),
of the largest worker process and of the job service alone, each relative to the smallest size,
and the peak of the runner's stage outputs on disk (`on disk MB`). Building the shards is not
measured; it takes ~30 s per 1,000 images, which `--shard-cache` saves on the next run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from llavaforge.runners.portable import WORKER_SCRIPT, job_service

BENCH = Path(__file__).resolve().parent
# SDK workers: the job service's launchers and the processes its zygote forks (the zygote itself,
# preloaded and never running a bundle, counts with them), or the DirectRunner's own workers.
WORKER_PROCESS_NAMES = (WORKER_SCRIPT.encode(), b"llavaforge.runners.zygote", b"sdk_worker_main")
JOB_SERVICE_PROCESS_NAME = b"llavaforge.runners.portable"


def _spilled_kb(pids) -> int:
    """The size of the unlinked temporary files these processes hold open: the local runner's
    stage outputs on disk (runners/spilled_buffers.py), kB."""
    folder, total = tempfile.gettempdir(), 0
    for pid in pids:
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    link = os.readlink(f"/proc/{pid}/fd/{fd}")
                    if link.startswith(folder) and link.endswith(" (deleted)"):
                        total += os.stat(f"/proc/{pid}/fd/{fd}").st_size
    return total // 1024


def _peak_rss_of_descendants(root: int, peaks: dict[int, int], workers: set[int], services: set[int],
                             stop: threading.Event) -> None:
    """Every second, the peak RSS (VmHWM, kB) of every process below `root`, into `peaks`;
    the SDK worker processes among them into `workers`, the job service into `services`; the
    peak of the stage outputs all of them and `root` hold on disk into `peaks["spilled"]` (Linux)."""
    while not stop.wait(1.0):
        parents = {}
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    with open(f"/proc/{entry}/stat") as f:
                        parents[int(entry)] = int(f.read().rsplit(")", 1)[1].split()[1])
                except (OSError, IndexError, ValueError):
                    continue
        below, frontier = set(), {root}
        while frontier:
            frontier = {pid for pid, parent in parents.items() if parent in frontier} - below
            below |= frontier
        for pid in below:
            try:
                with open(f"/proc/{pid}/status") as f:
                    hwm = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    command = f.read()
                    if any(name in command for name in WORKER_PROCESS_NAMES):
                        workers.add(pid)
                    elif JOB_SERVICE_PROCESS_NAME in command:
                        services.add(pid)
            except (OSError, StopIteration):
                continue
            peaks[pid] = max(peaks.get(pid, 0), hwm)
        peaks["spilled"] = max(peaks.get("spilled", 0), _spilled_kb(below | {root}))


def cached_shards(cache: Path, images: int) -> list[str]:
    """The shards of `images` images, built into `cache` once (a build cut short is redone)."""
    import pipeline_standin

    folder = cache / f"images-{images}"
    complete = folder / "COMPLETE"
    if not complete.exists():
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        pipeline_standin.build_shards(folder, images, near_duplicates=0.05)
        complete.touch()
    return sorted(str(path) for path in folder.glob("shard-*.tar"))


def one_size(images: int, speedup: float, workers: int, multi_processing: bool, shard_cache: Path | None) -> dict:
    os.environ["STANDIN_SPEEDUP"] = str(speedup)  # read when the stand-ins are imported
    sys.path.insert(0, str(BENCH))
    import pipeline_standin
    import workload
    from llavaforge.config.recipe import load_recipe
    from llavaforge.jobs.run import run

    pipeline_standin.patch_models()
    work = Path(tempfile.mkdtemp(prefix="llavaforge-scaling-"))
    shards = (cached_shards(shard_cache, images) if shard_cache else
              pipeline_standin.build_shards(work, images, near_duplicates=0.05))
    recipe = load_recipe(None, {**workload.RECIPE, "dedup.near.enabled": True})
    peaks: dict[int, int] = {}
    worker_pids: set[int] = set()
    service_pids: set[int] = set()
    stop = threading.Event()
    sampler = threading.Thread(target=_peak_rss_of_descendants,
                               args=(os.getpid(), peaks, worker_pids, service_pids, stop), daemon=True)
    sampler.start()
    # Beam's portable job service is started here, so it and its workers are this process's descendants.
    with job_service(workers) if workers and not multi_processing else contextlib.nullcontext() as service:
        if service is not None:
            beam_args = service.flags
        elif workers:
            beam_args = ["--direct_running_mode=multi_processing", f"--direct_num_workers={workers}"]
        else:
            beam_args = ["--direct_running_mode=in_memory"]
        start = time.time()
        try:
            run(recipe, shards, str(work / "out"), beam_args)
            failure = None
        except Exception as e:  # noqa: BLE001 -- a run that fails verification still measured its cost
            failure = str(e).splitlines()[-1][-300:]
        wall = time.time() - start
    stop.set()
    sampler.join()
    spilled_kb = peaks.pop("spilled", 0)
    runner_kb = max([resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                     *(kb for pid, kb in peaks.items() if pid not in worker_pids)])
    # What the run wrote (published or not): the run folder's own stats.
    stats = json.loads(next((work / "out").glob("run-*/stats.json")).read_text())
    shutil.rmtree(work, ignore_errors=True)
    return {"images": images, "wall_s": wall, "written": stats["images_written"], "failure": failure,
            "near_duplicates": stats["duplicates"],
            "duplicate_questions": stats["rejects"].get("question_dedup", {}).get("duplicate_question", 0),
            "peak_rss_mb": runner_kb / 1024, "peak_spilled_mb": spilled_kb / 1024,
            "worker_peak_rss_mb": max((peaks[pid] for pid in worker_pids), default=0) / 1024 if workers else None,
            "job_service_peak_rss_mb": max((peaks[pid] for pid in service_pids), default=0) / 1024 or None}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--images", type=int, nargs="+", default=[1000, 10000])
    p.add_argument("--speedup", type=float, default=100.0)
    p.add_argument("--workers", type=int, default=0,
                   help="SDK worker processes (0: the in-process runner)")
    p.add_argument("--multi-processing", action="store_true",
                   help="the workers of the DirectRunner's multi-processing mode (default: of the portable job service)")
    p.add_argument("--shard-cache", type=Path,
                   help="build each size's shards into this folder once and reuse them (default: a fresh build per run)")
    p.add_argument("--_one", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args._one:
        print(json.dumps(one_size(args._one, args.speedup, args.workers, args.multi_processing, args.shard_cache)))
        return
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(BENCH), os.environ.get("PYTHONPATH", "")])}
    rows = []
    for images in args.images:
        done = subprocess.run([sys.executable, __file__, "--_one", str(images), "--speedup", str(args.speedup),
                               "--workers", str(args.workers), *(["--multi-processing"] if args.multi_processing else []),
                               *(["--shard-cache", str(args.shard_cache)] if args.shard_cache else [])],
                              capture_output=True, text=True, env=env)
        if done.returncode:
            raise SystemExit(done.stderr[-3000:])
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    base = rows[0]
    mode = ("in-process DirectRunner" if not args.workers else
            f"DirectRunner multi-processing, {args.workers} workers" if args.multi_processing else
            f"portable job service, {args.workers} workers")
    print(f"SIMULATED (stand-ins, device time / {args.speedup:g}); {mode}")
    print(f"{'images':>8}{'wall s':>9}{'ms/image':>10}{'vs first':>9}{'runner peak MB':>16}{'vs first':>9}"
          f"{'worker peak MB':>16}{'vs first':>9}{'job service MB':>16}{'vs first':>9}{'on disk MB':>12}"
          f"{'written':>9}{'dups':>7}{'dup questions':>15}")
    for r in rows:
        per = 1000 * r["wall_s"] / r["images"]
        worker = (f"{r['worker_peak_rss_mb']:>16.0f}{r['worker_peak_rss_mb'] / base['worker_peak_rss_mb']:>8.2f}x"
                  if args.workers else f"{'-':>16}{'':>9}")
        service = (f"{r['job_service_peak_rss_mb']:>16.0f}"
                   f"{r['job_service_peak_rss_mb'] / base['job_service_peak_rss_mb']:>8.2f}x"
                   if r["job_service_peak_rss_mb"] else f"{'-':>16}{'':>9}")
        print(f"{r['images']:>8}{r['wall_s']:>9.1f}{per:>10.1f}{per / (1000 * base['wall_s'] / base['images']):>8.2f}x"
              f"{r['peak_rss_mb']:>16.0f}{r['peak_rss_mb'] / base['peak_rss_mb']:>8.2f}x{worker}{service}"
              f"{r['peak_spilled_mb']:>12.0f}{r['written']:>9}"
              f"{r['near_duplicates']:>7}{r['duplicate_questions']:>15}")
        if r["failure"]:
            print(f"{'':>8}  NOT PUBLISHED: {r['failure']}")
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
