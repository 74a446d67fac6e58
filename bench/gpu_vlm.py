"""GPU benchmark of the VLM roles' hf backend on random Qwen2-VL-shaped models (one GPU, no network).

For each shape (Qwen2-VL-2B and -7B; random bf16 weights built on the GPU from the config:
speed depends on shapes, not values), on --images synthetic 640x480 JPEGs fitted to
--image-side pixels, images/s of two roles:

  caption  the packaged dense caption prompt, --caption-tokens new tokens per image
  verify   the packaged verify prompt judging three answers, --verify-tokens new tokens

by these methods, in this order (a shape that spends --shape-budget-s skips the rest):

  plain                    Pillow decode + the processor + one `generate` call per --batch
                           images, on images fitted to the same size (the baseline)
  lf_caption_first_call    llavaforge's engine (models/vlm/hf.py): GPU JPEG decode and
                           preprocessing, image encodings cached, its static-KV-cache loop with
                           the one-token step compiled with CUDA graphs; the first call compiles
  lf_caption               the same engine, warm, its encoding cache emptied first
  lf_verify                after lf_caption: the verifier reuses the caption's image encodings
  lf_verify_uncached       the same with the cache emptied (encoding every image again)
  lf_generate_caption      the engine with `generate` instead of its loop (encoding cache only)

Every method decodes exactly the same number of tokens (EOS is unreachable); texts are
compared with plain's. JSON is written after every measurement, so a run cut short keeps what
it measured.

    python bench/gpu_vlm.py                # one H100/H200: about 6 minutes, under 8
    python bench/gpu_vlm.py --smoke        # any CPU: a tiny SmolVLM shape, checks the script runs
    python bench/gpu.py --sections vlm     # the same from the GPU harness (bench/device_run.sh)
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any, Callable

import torch
import transformers as tf

from vlm_common import (agreement, build, caption_requests, engine, jpegs, plain, run_engine, timed,
                        verify_requests)


def run_shape(name: str, args, device: str, record: Callable[[str, str, Any], None]) -> None:
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    started = time.perf_counter()
    model, processor = build(name, device, dtype, args.image_side)
    record(name, "build_seconds", round(time.perf_counter() - started, 1))
    images = jpegs(args.images)
    captions, verdicts = caption_requests(images), verify_requests(images)
    first_batch = captions[: args.batch]
    compile_on_gpu = device == "cuda"
    engines: dict[str, Any] = {}

    def lf(static: bool = True):
        key = f"static={static}"
        if key not in engines:
            engines[key] = engine(model, processor, device, args.image_side, args.batch, static_decode=static,
                                  compile=static and compile_on_gpu, image_cache_mb=8192)
        return engines[key]

    def fresh(vlm):
        vlm.encodings = type(vlm.encodings)(vlm.encodings.max_bytes)  # an empty cache: every image encoded
        return vlm

    plain_texts: dict[str, list[str]] = {}  # per role: what plain generate wrote (the others are compared)
    plain_rate: dict[str, float] = {}  # per role: plain generate's images/s
    measures = [  # (label, role, what runs, images)
        ("plain_caption", "caption", lambda: plain(model, processor, captions, args.image_side, args.caption_tokens,
                                                    args.batch), len(captions)),
        ("plain_verify", "verify", lambda: plain(model, processor, verdicts, args.image_side, args.verify_tokens,
                                                  args.batch), len(verdicts)),
        ("lf_caption_first_call", "caption", lambda: run_engine(lf(), first_batch, args.caption_tokens, args.batch),
         len(first_batch)),
        ("lf_caption", "caption", lambda: run_engine(fresh(lf()), captions, args.caption_tokens, args.batch),
         len(captions)),
        ("lf_verify", "verify", lambda: run_engine(lf(), verdicts, args.verify_tokens, args.batch), len(verdicts)),
        ("lf_verify_uncached", "verify", lambda: run_engine(fresh(lf()), verdicts, args.verify_tokens, args.batch),
         len(verdicts)),
        ("lf_generate_caption", "caption", lambda: run_engine(fresh(lf(static=False)), captions, args.caption_tokens,
                                                              args.batch), len(captions)),
    ]
    for label, role, fn, count in measures:
        spent = time.perf_counter() - started
        if spent > args.shape_budget_s or time.perf_counter() - args.started > args.time_limit_s:
            record(name, label, {"skipped": f"time budget spent ({spent:.0f} s on this shape)"})
            continue
        try:
            texts, seconds = timed(device, fn)
            rate = count / seconds
            if label.startswith("plain"):
                plain_texts[role], plain_rate[role] = texts, rate
            result = {"images": count, "seconds": round(seconds, 2), "img_s": round(rate, 2),
                      **agreement(texts, plain_texts.get(role, []))}
            if role in plain_rate and not label.startswith("plain"):
                result["vs_plain"] = round(rate / plain_rate[role], 2)
            if label.startswith("lf"):
                used = lf(static=not label.startswith("lf_generate"))
                result["encodings_reused_so_far"] = used.encodings.hits if used.encodings is not None else None
            record(name, label, result)
        except Exception as e:  # noqa: BLE001 -- one failed measure must not lose the others
            record(name, label, {"error": f"{type(e).__name__}: {e}"[:800]})
    vlm = engines.get("static=True")
    if vlm is not None:
        record(name, "engine", {"static_decode": vlm.static is not None, "encoding_cache": vlm.encodings is not None,
                                "gpu_decode_fallbacks": vlm.gpu_decode_fallbacks,
                                "prompt_tokens": _prompt_tokens(vlm, captions[:1] + verdicts[:1])})
    del model, engines
    if device == "cuda":
        torch.cuda.empty_cache()


def _prompt_tokens(vlm, requests) -> dict[str, int]:
    inputs = vlm.model_inputs(requests[:1]), vlm.model_inputs(requests[1:2])
    return {"caption": int(inputs[0]["attention_mask"].sum()), "verify": int(inputs[1]["attention_mask"].sum())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="a tiny SmolVLM shape on CPU: checks the script runs")
    parser.add_argument("--shapes", nargs="+", default=["qwen2-vl-2b", "qwen2-vl-7b"],
                        help="from bench/vlm_common.py SHAPES (smolvlm-2b: the hub preset's VLM option)")
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--image-side", type=int, default=448, help="max_image_side: 448 px = 192 Qwen2-VL tokens")
    parser.add_argument("--caption-tokens", type=int, default=128)
    parser.add_argument("--verify-tokens", type=int, default=48)
    parser.add_argument("--shape-budget-s", type=float, default=200.0)
    parser.add_argument("--time-limit-s", type=float, default=420.0, help="no measure starts after this")
    parser.add_argument("--out", default="bench/results/gpu_vlm.json")
    args = parser.parse_args()
    args.started = time.perf_counter()
    if args.smoke:
        args.shapes, args.images, args.batch, args.image_side = ["smolvlm-smoke"], 8, 4, 112
        args.caption_tokens, args.verify_tokens = 8, 4
    device = "cuda" if torch.cuda.is_available() and not args.smoke else "cpu"
    if device == "cpu" and not args.smoke:
        raise SystemExit("no GPU visible to torch: run with --smoke on a CPU")
    results: dict[str, Any] = {
        "device": torch.cuda.get_device_name() if device == "cuda" else platform.processor() or "cpu",
        "torch": torch.__version__, "transformers": tf.__version__, "smoke": args.smoke,
        "settings": {k: v for k, v in vars(args).items() if k not in ("out", "started")}, "shapes": {}}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)

    def record(shape: str, key: str, value: Any) -> None:
        results["shapes"].setdefault(shape, {})[key] = value
        print(f"{shape:14} {key:24} {value}", flush=True)
        out.write_text(json.dumps(results, indent=2))

    for name in args.shapes:
        try:
            run_shape(name, args, device, record)
        except Exception as e:  # noqa: BLE001 -- a shape that cannot be built must not lose the others
            record(name, "error", f"{type(e).__name__}: {e}"[:800])
    results["total_seconds"] = round(time.perf_counter() - args.started, 1)
    out.write_text(json.dumps(results, indent=2))
    print(f"total {results['total_seconds']} s; wrote {out}")


if __name__ == "__main__":
    main()
