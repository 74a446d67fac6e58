"""The GPU benchmark harness: one call on one GPU machine with no network, one table.

Runs, in order, each section writing its raw numbers into one JSON file as it finishes (so a
run cut short still leaves what it measured):

  hardware    a large bf16 matmul's TFLOP/s and a device-to-device copy's GB/s: the limits
  vision      detector (DETR-R50 shape) and tagger (CLIP-B/32 shape): llavaforge's handler
              (bf16, batched, decode included) vs a naive fp32 one-image-at-a-time loop
  captioner   bench/gpu_annotate.py (BLIP-base shape: naive batch 1, plain batched bf16
              generate at batch 256, llavaforge's handler)
  llm         bench/gpu_llm.py (Qwen2.5-0.5B and 7B shapes, ~1,500-token shared-prefix
              prompts, 256 new tokens: naive, plain batched generate, llavaforge's hf backend)
  pipeline    `llavaforge run` end to end on the realistic workload (bench/workload.py: task
              mix, two samples per image, 640x480 JPEGs, a 7B-shaped LLM on the hf backend)
              with the full-size vision models on the GPU: images/s, GPU busy fraction and the
              LLM's own rate from metrics.json (needs apache-beam on the machine; skipped with
              the reason otherwise)
  vlm         bench/gpu_vlm.py (Qwen2-VL-2B and 7B shapes: dense captioning and verification
              images/s, llavaforge's VLM backend vs plain batched generate); not in the default
              sections (it is its own ~7-minute call: `--sections vlm`)

    python bench/gpu.py                       # one H100, target < 8 minutes
    python bench/gpu.py --smoke               # any CPU, tiny shapes: checks every section runs
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import transformers as tf
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "bench"


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def timed(device: str, fn: Callable[[], Any], repeat: int = 1) -> float:
    fn()  # warm-up
    sync(device)
    start = time.perf_counter()
    for _ in range(repeat):
        fn()
    sync(device)
    return (time.perf_counter() - start) / repeat


def hardware(device: str, smoke: bool) -> dict[str, float]:
    n = 1024 if smoke else 8192
    dtype = torch.float32 if device == "cpu" else torch.bfloat16
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    seconds = timed(device, lambda: a @ b, repeat=3 if smoke else 20)
    src = torch.empty(2**26 if smoke else 2**30, dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    copy_seconds = timed(device, lambda: dst.copy_(src), repeat=3 if smoke else 20)
    return {"matmul_tflops": round(2 * n**3 / seconds / 1e12, 2),
            "copy_gb_s": round(2 * src.numel() / copy_seconds / 1e9, 1)}


def jpeg_records(n: int, side: int = 512):
    from llavaforge.schemas.record import ImageInfo, ImageRecord, Source, content_key

    rng = np.random.default_rng(0)
    records = []
    for i in range(n):
        image = Image.fromarray(rng.integers(0, 256, size=(24, 32, 3), dtype=np.uint8)).resize(
            (side, side * 3 // 4), Image.Resampling.BICUBIC)
        out = io.BytesIO()
        image.save(out, format="JPEG", quality=90)
        data = out.getvalue()
        records.append(ImageRecord(key=content_key(data), source=Source("bench", str(i)),
                                   image=ImageInfo(data, "jpg", side, side * 3 // 4, "", "")))
    return records


def build_vision_models(folder: Path, smoke: bool) -> dict[str, Path]:
    """Random full-size (or --smoke tiny) DETR-R50 and CLIP-B/32, saved for from_pretrained."""
    from llavaforge.models.tiny import _clip_tokenizer

    torch.manual_seed(0)
    paths = {"detector": folder / "detr", "tagger": folder / "clip"}
    backbone = tf.ResNetConfig(embedding_size=16, hidden_sizes=[16, 32], depths=[1, 1], out_features=["stage2"]) \
        if smoke else tf.ResNetConfig(out_features=["stage4"])  # ResNetConfig() is ResNet-50
    detr = tf.DetrConfig(use_timm_backbone=False, backbone_config=backbone, use_pretrained_backbone=False,
                         num_labels=91, **(dict(d_model=32, encoder_layers=1, decoder_layers=1,
                                                encoder_attention_heads=2, decoder_attention_heads=2,
                                                num_queries=10) if smoke else {}))
    tf.DetrForObjectDetection(detr).save_pretrained(paths["detector"])
    size = 64 if smoke else 800
    tf.DetrImageProcessor(size={"shortest_edge": size, "longest_edge": size}).save_pretrained(paths["detector"])
    tokenizer = _clip_tokenizer()
    clip = tf.CLIPConfig(
        text_config=dict(vocab_size=tokenizer.vocab_size, **(dict(hidden_size=32, num_hidden_layers=1,
                         num_attention_heads=2, intermediate_size=64) if smoke else {})),
        vision_config=dict(patch_size=32, image_size=224, **(dict(hidden_size=32, num_hidden_layers=1,
                           num_attention_heads=2, intermediate_size=64) if smoke else {})))
    tf.CLIPModel(clip).save_pretrained(paths["tagger"])
    tf.CLIPProcessor(image_processor=tf.CLIPImageProcessor(), tokenizer=tokenizer).save_pretrained(paths["tagger"])
    return paths


def vision(device: str, smoke: bool, folder: Path) -> dict[str, Any]:
    from llavaforge.config.annotate import DetectorConfig, TaggerConfig
    from llavaforge.models.detector import DetectorHandler
    from llavaforge.models.tagger import TaggerHandler

    paths = build_vision_models(folder, smoke)
    batch, images, naive_images = (4, 8, 4) if smoke else (128, 1024, 32)
    records = jpeg_records(images)
    dtype = "fp32" if device == "cpu" else "bf16"
    results = {}
    for role, handler_cls, config_cls, extra in (
            ("detector", DetectorHandler, DetectorConfig, {"kind": "detr"}),
            ("tagger", TaggerHandler, TaggerConfig, {"kind": "clip"})):
        fast = handler_cls(config_cls(model=str(paths[role]), device=device, dtype=dtype,
                                      max_batch_size=batch, **extra))
        naive = handler_cls(config_cls(model=str(paths[role]), device=device, dtype="fp32",
                                       max_batch_size=1, **extra))
        fast_model, naive_model = fast.load_model(), naive.load_model()
        fast_s = timed(device, lambda: [fast.run_inference(records[i:i + batch], fast_model)
                                        for i in range(0, images, batch)])
        naive_s = timed(device, lambda: [naive.run_inference([r], naive_model) for r in records[:naive_images]])
        results[role] = {"handler_img_s": round(images / fast_s, 1), "naive_img_s": round(naive_images / naive_s, 1),
                         "ratio": round((images / fast_s) / (naive_images / naive_s), 2)}
        del fast_model, naive_model
    return results


def script(name: str, smoke: bool, out: Path, timeout: int, *extra: str) -> dict[str, Any]:
    """Run one of the per-stage GPU scripts; its JSON, or why it has none."""
    cmd = [sys.executable, str(BENCH / name), "--out", str(out), *extra] + (["--smoke"] if smoke else [])
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=REPO)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout} s", **(json.loads(out.read_text()) if out.exists() else {})}
    if done.returncode != 0:
        return {"error": done.stderr[-1500:]}
    return json.loads(out.read_text())


def gpu_busy_sampler(device: str):
    """Samples torch.cuda.utilization() (NVML) every 0.2 s until stopped.

    Returns a function giving (busy fraction of the whole wall time, busy fraction between the
    first and the last busy sample: the part after start-up and model loading)."""
    samples: list[float] = []
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            try:
                samples.append(torch.cuda.utilization())
            except Exception:  # noqa: BLE001 -- no NVML: no utilisation figure
                return
            time.sleep(0.2)

    thread = threading.Thread(target=sample, daemon=True)
    if device == "cuda":
        thread.start()

    def finish() -> tuple[float | None, float | None]:
        stop.set()
        if device == "cuda":
            thread.join()
        busy = [i for i, v in enumerate(samples) if v > 0]
        if not busy:
            return None, None
        window = samples[busy[0]:busy[-1] + 1]
        return round(sum(samples) / len(samples) / 100, 3), round(sum(window) / len(window) / 100, 3)

    return finish


def build_llm(folder: Path, smoke: bool, shape: str) -> Path:
    """A random chat model of one of bench/gpu_llm.py's shapes with the project's tiny chat
    tokenizer, saved."""
    from gpu_llm import SHAPES, SMOKE_SHAPE, build_model

    from llavaforge.models.llm.local_models import build_tiny_tokenizer

    tokenizer = build_tiny_tokenizer()
    on = "cuda" if torch.cuda.is_available() and not smoke else "cpu"  # a 7B random init on CPU takes minutes
    model = build_model(SMOKE_SHAPE if smoke else SHAPES[shape], on, torch.float32 if smoke else torch.bfloat16,
                        len(tokenizer))
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    del model
    if on == "cuda":
        torch.cuda.empty_cache()  # the run's own process loads it again
    return folder


def pipeline(device: str, smoke: bool, folder: Path, vision_paths: dict[str, Path], timeout: int) -> dict[str, Any]:
    """`llavaforge run` end to end on the realistic workload (bench/workload.py) with every model
    role on the GPU: captioner, detector, tagger and a Qwen2.5-7B-shaped LLM on the hf backend."""
    if importlib.util.find_spec("apache_beam") is None:
        return {"skipped": "apache_beam is not installed on this machine (carry its wheels to run this section)"}
    sys.path.insert(0, str(BENCH))
    import workload  # noqa: E402
    from gpu_annotate import build_model as build_captioner  # noqa: E402
    from pipeline_standin import build_shards  # noqa: E402 -- the workload's 640x480 JPEG shards

    from llavaforge.jobs.ledger import published_run_dir

    images = 32 if smoke else 1024
    folder.mkdir(parents=True, exist_ok=True)
    if not all(path.exists() for path in vision_paths.values()):  # the vision section did not run
        vision_paths = build_vision_models(folder, smoke)
    shards = build_shards(folder, images)
    build_captioner(folder / "blip", smoke)
    llm = build_llm(folder / "llm", smoke, "qwen2.5-7b")
    # Random weights almost never reach EOS, so every sample decodes max_new_tokens: the workload's
    # mean length stands in for its log-normal spread (the spread's cost, rows finishing at
    # different steps of one batch, is not measured here; the stand-in benchmark models it).
    mean_new_tokens = round(sum(workload.TASK_WEIGHTS[t] * workload.NEW_TOKENS_MEDIAN[t] for t in workload.TASK_WEIGHTS)
                            / sum(workload.TASK_WEIGHTS.values()))
    dtype = "fp32" if device == "cpu" else "bf16"
    overrides = {**workload.RECIPE,
                 "annotate.captioner.model": str(folder / "blip"), "annotate.captioner.max_new_tokens": 20,
                 "annotate.detector.model": str(vision_paths["detector"]), "annotate.detector.kind": "detr",
                 "annotate.tagger.model": str(vision_paths["tagger"]),
                 "synthesize.backend": "hf", "synthesize.model": str(llm),
                 "synthesize.max_new_tokens": 8 if smoke else mean_new_tokens}
    for role in ("captioner", "detector", "tagger"):
        overrides.update({f"annotate.{role}.device": device, f"annotate.{role}.dtype": dtype})
        if smoke:
            overrides.update({f"annotate.{role}.min_batch_size": 8, f"annotate.{role}.max_batch_size": 8})
    if smoke:
        overrides.update({"synthesize.min_batch_size": 8, "synthesize.max_batch_size": 8})
    sets = [a for field, value in overrides.items() for a in ("--set", f"{field}={json.dumps(value)}")]
    out = folder / "out"
    cmd = [sys.executable, "-m", "llavaforge.cli", "-q", "run", *[a for s in shards for a in ("--input", s)],
           "--output", str(out), *sets]
    finish = gpu_busy_sampler(device)
    start = time.perf_counter()
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=timeout)
    except subprocess.TimeoutExpired:
        finish()
        return {"error": f"timed out after {timeout} s", "images": images}
    wall = time.perf_counter() - start
    busy, busy_active = finish()
    if done.returncode != 0:
        return {"error": done.stderr[-1500:]}
    run_dir = Path(published_run_dir(str(out)))
    stats, metrics = (json.loads((run_dir / name).read_text()) for name in ("stats.json", "metrics.json"))
    llm = next((m for name, m in metrics.get("models", {}).items() if "llm" in name), {})
    return {"images": images, "images_s": round(images / wall, 2), "wall_s": round(wall, 1), "gpu_busy": busy,
            "gpu_busy_after_first_use": busy_active, "new_tokens_per_sample": overrides["synthesize.max_new_tokens"],
            "llm_metrics": llm,
            "stats": {k: v for k, v in stats.items() if not isinstance(v, list)}, "model_metrics": metrics}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny shapes on CPU: checks every section runs")
    parser.add_argument("--out", default="bench/results/gpu.json")
    parser.add_argument("--sections", nargs="+", default=["hardware", "llm", "captioner", "vision", "pipeline"])
    parser.add_argument("--llm-shapes", nargs="+", default=["qwen2.5-0.5b", "qwen2.5-7b"])
    parser.add_argument("--llm-shape-budget-s", type=int, default=95,
                        help="seconds per LLM shape before its remaining measures are skipped")
    parser.add_argument("--captioner-time-limit-s", type=int, default=95,
                        help="seconds after which no further captioner variant starts")
    parser.add_argument("--vlm-time-limit-s", type=int, default=420,
                        help="seconds after which no further VLM measure starts")
    args = parser.parse_args()
    device = "cuda" if torch.cuda.is_available() and not args.smoke else "cpu"
    if device == "cpu" and not args.smoke:
        raise SystemExit("no GPU visible to torch: run with --smoke on a CPU")
    out = REPO / args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="llavaforge-bench-gpu-"))
    results: dict[str, Any] = {"device": torch.cuda.get_device_name() if device == "cuda" else "cpu (smoke)",
                               "torch": torch.__version__, "transformers": tf.__version__}
    started = time.perf_counter()

    def section(name: str, fn: Callable[[], Any]) -> None:
        if name not in args.sections:
            return
        t0 = time.perf_counter()
        try:
            results[name] = fn()
        except Exception as e:  # noqa: BLE001 -- one failed section must not lose the others
            results[name] = {"error": f"{type(e).__name__}: {e}"}
        results.setdefault("seconds", {})[name] = round(time.perf_counter() - t0, 1)
        out.write_text(json.dumps(results, indent=2))
        print(f"== {name}: {json.dumps(results[name])}", flush=True)

    # The largest targets first; every script section has its own time limit (about 8 minutes in all).
    section("hardware", lambda: hardware(device, args.smoke))
    llm_budget = args.llm_shape_budget_s
    section("llm", lambda: script("gpu_llm.py", args.smoke, folder / "llm.json",
                                  20 + len(args.llm_shapes) * (llm_budget + 12),
                                  "--shape-budget-s", str(llm_budget), "--shapes", *args.llm_shapes))
    captioner_limit = args.captioner_time_limit_s
    section("captioner", lambda: script("gpu_annotate.py", args.smoke, folder / "captioner.json", captioner_limit + 30,
                                        "--time-limit", str(captioner_limit)))
    section("vision", lambda: vision(device, args.smoke, folder))
    section("pipeline", lambda: pipeline(device, args.smoke, folder / "pipeline",
                                         {"detector": folder / "detr", "tagger": folder / "clip"}, 200))
    vlm_limit = args.vlm_time_limit_s
    section("vlm", lambda: script("gpu_vlm.py", args.smoke, folder / "vlm.json", vlm_limit + 60,
                                  "--time-limit-s", str(vlm_limit)))
    results["total_seconds"] = round(time.perf_counter() - started, 1)
    out.write_text(json.dumps(results, indent=2))
    print(f"total {results['total_seconds']} s; wrote {out}")


if __name__ == "__main__":
    main()
