"""Benchmark: `llavaforge report` on a large synthetic run folder.

Builds a run folder with llavaforge's own shard writers (samples/, wds/, llava/, images/,
rejects/, stats.json): N images with 1-3 tasks each (about 2N samples) and realistic text
lengths, annotations and rejects. Then, in this one process, measures

  baseline   reading the same Parquet columns the report reads (samples/ and rejects/), nothing else
  report     render_report: aggregates over every row, gallery thumbnails, HTML written

and prints the report's time (and its steps), its ratio to the baseline, the HTML size and the
peak RSS of the process that read and rendered (the run folder is built in a child process).

    python bench/report_scale.py                   # 5,000 images, about 10,000 samples
    python bench/report_scale.py --images 100000   # about 200,000 samples
"""

from __future__ import annotations

import argparse
import multiprocessing
import hashlib
import io
import json
import resource
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from llavaforge.report import render_report  # noqa: E402
from llavaforge.report.collect import SAMPLE_COLUMNS  # noqa: E402
from llavaforge.schemas.record import (Annotations, Caption, Conversation, DetectedObject, ImageInfo,  # noqa: E402
                                       ImageRecord, OcrText, Provenance, Reject, Source, Tag, Turn)
from llavaforge.transforms.write import (STATS_FILE, build_stats, join, shard_count, shard_of,  # noqa: E402
                                         write_image_shard, write_reject_shard)

WORDS = ("the a dog cat person car tree street window table red blue green small large wooden sits stands "
         "next to near behind on under holding looking at two three several bright dark old new building sky "
         "water grass road sign people child woman man bicycle bus train boat bird horse plate cup phone "
         "laptop chair bench umbrella kite ball shadow light afternoon evening morning busy quiet").split()
LABELS = ("person car dog cat chair bench bottle cup bicycle bus truck bird tree sign umbrella laptop "
          "phone book clock vase plant horse boat kite").split()
TASKS = ("conversation", "detail", "reasoning")
FLAGS = ("truncated", "ocr_mismatch", "wrong_count")
REJECTS = (("decode", "truncated"), ("decode", "too_small"), ("read", "no_image"), ("dedup", "duplicate"),
           ("synthesize", "unparseable"), ("check", "no_valid_conversation"))
IMAGE_VARIANTS = 64  # distinct image files; keys stay unique per image


def sentence(rng: np.random.Generator, low: int, high: int) -> str:
    words = rng.choice(WORDS, size=int(rng.integers(low, high)))
    return " ".join(words).capitalize() + "."


def paragraph(rng: np.random.Generator, sentences: int) -> str:
    return " ".join(sentence(rng, 6, 18) for _ in range(sentences))


def image_variants(rng: np.random.Generator) -> list[tuple[bytes, int, int]]:
    """Smooth photo-like JPEGs (a blurred colour field), 640x480 and 480x640."""
    variants = []
    for i in range(IMAGE_VARIANTS):
        width, height = (640, 480) if i % 3 else (480, 640)
        small = rng.integers(0, 256, size=(6, 8, 3), dtype=np.uint8)
        out = io.BytesIO()
        Image.fromarray(small).resize((width, height), Image.Resampling.BICUBIC).save(out, format="JPEG", quality=85)
        variants.append((out.getvalue(), width, height))
    return variants


def conversation(rng: np.random.Generator, task: str) -> Conversation:
    if task == "conversation":
        rounds = int(rng.integers(2, 6))
        pairs = [(sentence(rng, 5, 12).rstrip(".") + "?", paragraph(rng, int(rng.integers(1, 4))))
                 for _ in range(rounds)]
    elif task == "detail":
        pairs = [("Describe this image in detail.", paragraph(rng, int(rng.integers(5, 10))))]
    else:
        pairs = [(sentence(rng, 8, 16).rstrip(".") + "?", paragraph(rng, int(rng.integers(3, 7))))]
    turns = []
    for i, (question, answer) in enumerate(pairs):
        turns += [Turn("human", ("<image>\n" if i == 0 else "") + question), Turn("gpt", answer)]
    flags = [str(rng.choice(FLAGS))] if rng.random() < 0.05 else []
    return Conversation(task=task, turns=turns, backend="hf", model="bench/llm", prompt_version=f"{task}-v1",
                        tokens_in=int(rng.integers(300, 600)), tokens_out=int(rng.integers(40, 400)),
                        seed=int(rng.integers(0, 2**31)), flags=flags)


def record(rng: np.random.Generator, index: int, variants, provenance: Provenance) -> ImageRecord:
    key = hashlib.sha256(f"bench-{index}".encode()).hexdigest()[:32]
    data, width, height = variants[index % len(variants)]

    def box() -> list[float]:
        x, y = rng.random(2) * 0.7
        return [float(x), float(y), float(x + 0.1 + rng.random() * 0.2), float(y + 0.1 + rng.random() * 0.2)]

    annotations = Annotations(
        captions=[Caption(sentence(rng, 6, 14), "bench/captioner")],
        objects=[DetectedObject(str(rng.choice(LABELS)), float(rng.random()), box(), "bench/detector")
                 for _ in range(int(rng.integers(0, 8)))],
        tags=[Tag(str(t), float(rng.random()), "bench/tagger") for t in rng.choice(LABELS, 4, replace=False)],
        ocr=[OcrText(sentence(rng, 1, 4), float(rng.random()), box(), "bench/ocr")
             for _ in range(int(rng.integers(0, 3)))])
    tasks = [t for t in TASKS if rng.random() < 0.67] or [TASKS[int(rng.integers(0, 3))]]
    return ImageRecord(
        key=key, source=Source(url=f"gs://bench/shard-{index // 1000:05d}.tar", member=f"{index:08d}.jpg",
                               texts=[sentence(rng, 4, 20)]),
        image=ImageInfo(data=data, format="jpg", width=width, height=height, sha256=key * 2, phash="0" * 16),
        annotations=annotations, conversations=[conversation(rng, t) for t in tasks], provenance=provenance)


def build_run(folder: Path, images: int, per_shard: int = 1000) -> dict:
    rng = np.random.default_rng(0)
    variants = image_variants(rng)
    provenance = Provenance(version="bench", recipe_hash="0" * 16, run_id="bench")
    shards = shard_count(images, per_shard)
    by_shard: dict[int, list[ImageRecord]] = {}
    rejects: list[Reject] = []
    for i in range(images):
        r = record(rng, i, variants, provenance)
        by_shard.setdefault(shard_of(r.key, shards), []).append(r)
    image_summaries = [write_image_shard(str(folder), index, records) for index, records in sorted(by_shard.items())]
    by_shard.clear()
    rejected_inputs = images // 10
    for i in range(rejected_inputs):
        stage, reason = REJECTS[i % len(REJECTS)]
        key = hashlib.sha256(f"bench-reject-{i}".encode()).hexdigest()[:32]
        rejects.append(Reject(key=key, source_url=f"gs://bench/shard-{i // 1000:05d}.tar", source_member=f"r{i:08d}.jpg",
                              stage=stage, reason=reason, detail=sentence(rng, 5, 30)))
    for i in range(images // 5):  # sample-level rejects of written images
        rejects.append(Reject(key=hashlib.sha256(f"bench-{i}".encode()).hexdigest()[:32], source_url="gs://bench/x.tar",
                              source_member=f"{i:08d}.jpg", stage="check", reason="repetition",
                              detail=sentence(rng, 5, 30), task=TASKS[i % 3]))
    reject_summaries = [write_reject_shard(str(folder), 0, rejects)]
    inputs = images + rejected_inputs
    stats = build_stats(inputs, image_summaries, reject_summaries,
                        {"run_id": "bench", "recipe_hash": "0" * 16, "preset": None, "started_at": 0.0,
                         "finished_at": 1.0})
    with open(join(str(folder), STATS_FILE), "w") as f:
        json.dump(stats, f, indent=2, sort_keys=True)
    return stats


def read_columns(folder: Path) -> int:
    """The baseline: the Parquet columns the report reads, and nothing done with them."""
    rows = 0
    for path in sorted((folder / "samples").glob("*.parquet")):
        rows += pq.read_table(path, columns=SAMPLE_COLUMNS).num_rows
    for path in sorted((folder / "rejects").glob("*.parquet")):
        rows += pq.read_table(path).num_rows
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=5000, help="written images (about 2 samples each)")
    parser.add_argument("--gallery", type=int, default=200)
    parser.add_argument("--keep", metavar="DIR", help="build the run folder here and keep it")
    args = parser.parse_args()
    imported_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    with tempfile.TemporaryDirectory(prefix="llavaforge-report-bench-") as tmp:
        folder = Path(args.keep or tmp) / "run"
        started = time.perf_counter()
        # built in a child process, so the peak RSS printed below is the report's (and the baseline's)
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
            stats = pool.submit(build_run, folder, args.images).result()
        print(f"built {stats['images_written']:,} images, {stats['samples_written']:,} samples, "
              f"{stats['images_rejected'] + stats['duplicates'] + stats['sample_rejects']:,} reject rows "
              f"in {time.perf_counter() - started:.1f} s")
        baselines = []
        for _ in range(5):  # the best of five: one read is short and noisy on a shared machine
            started = time.perf_counter()
            read_columns(folder)
            baselines.append(time.perf_counter() - started)
        result = render_report(str(folder), str(Path(tmp) / "report.html"), gallery_images=args.gallery)
        baseline = min(baselines)
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"baseline (read the Parquet columns)  {baseline:7.2f} s")
        print(f"report (render_report)               {result.seconds:7.2f} s  = {result.seconds / baseline:.1f}x baseline")
        print("  of which                            " + ", ".join(f"{k} {v:.2f} s" for k, v in result.timings.items()))
        print(f"report size                          {result.bytes / 1e6:7.2f} MB  "
              f"({result.images_shown} of {result.images_total:,} images in the gallery)")
        print(f"peak RSS of this process             {peak_mb:7.0f} MB  ({imported_mb:.0f} MB after imports)")


if __name__ == "__main__":
    main()
