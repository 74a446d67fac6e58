"""CPU images/s of the VLM roles' hf backend vs plain `generate` (one run, one loaded model).

A random SmolVLM-shaped model small enough for a 2-core VM (bench/vlm_common.py `smolvlm-cpu`:
image split into 224 px crops, 64 tokens each), on --images synthetic 640x480 JPEGs fitted to
--image-side pixels, greedy, every method decoding the same number of tokens:

  naive         Pillow + processor + `generate`, one image at a time (the first --naive images)
  plain         the same, --batch images per `generate` call (the baseline of the ratios)
  lf            llavaforge's engine (models/vlm/hf.py): batched, its static-KV-cache loop
                (uncompiled on CPU), image encodings cached
  caption       the dense caption prompt; `lf` starts with an empty encoding cache
  verify        the verify prompt with three answers; `lf verify` runs after `lf caption` and
                reuses its encodings, `lf verify (uncached)` encodes every image again

    python bench/vlm_cpu.py [--images 32] [--batch 16] [--caption-tokens 32] [--verify-tokens 16]
"""

from __future__ import annotations

import argparse
import json
import platform

import torch
import transformers

from vlm_common import (agreement, build, caption_requests, engine, jpegs, plain, run_engine, timed,
                        verify_requests)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shape", default="smolvlm-cpu")
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--naive", type=int, default=8)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--image-side", type=int, default=448)
    parser.add_argument("--caption-tokens", type=int, default=32)
    parser.add_argument("--verify-tokens", type=int, default=16)
    args = parser.parse_args()
    model, processor = build(args.shape, "cpu", torch.float32, args.image_side)
    images = jpegs(args.images)
    captions, verdicts = caption_requests(images), verify_requests(images)
    vlm = engine(model, processor, "cpu", args.image_side, args.batch, static_decode=True, image_cache_mb=1024)

    def uncached():
        vlm.encodings = type(vlm.encodings)(vlm.encodings.max_bytes)
        return vlm

    run_engine(vlm, captions[:2], 2, args.batch)  # warm-up (first-call allocations), not timed
    rows = [
        ("caption", "naive (batch 1)", lambda: plain(model, processor, captions[:args.naive], args.image_side,
                                                      args.caption_tokens, 1), args.naive),
        ("caption", f"plain (batch {args.batch})", lambda: plain(model, processor, captions, args.image_side,
                                                                  args.caption_tokens, args.batch), args.images),
        ("caption", f"lf (batch {args.batch})", lambda: run_engine(uncached(), captions, args.caption_tokens,
                                                                    args.batch), args.images),
        ("verify", f"plain (batch {args.batch})", lambda: plain(model, processor, verdicts, args.image_side,
                                                                 args.verify_tokens, args.batch), args.images),
        ("verify", f"lf (batch {args.batch}), encodings from the caption pass",
         lambda: run_engine(vlm, verdicts, args.verify_tokens, args.batch), args.images),
        ("verify", f"lf (batch {args.batch}), uncached", lambda: run_engine(uncached(), verdicts, args.verify_tokens,
                                                                             args.batch), args.images),
    ]
    results, base, reference = [], {}, {}
    for role, method, fn, count in rows:
        texts, seconds = timed("cpu", fn)
        rate = count / seconds
        if method.startswith("plain"):
            base[role], reference[role] = rate, texts
        results.append({"role": role, "method": method, "images": count, "img_s": round(rate, 2),
                        "vs_plain": round(rate / base[role], 2) if role in base else None,
                        **agreement(texts, reference.get(role, []))})
        print(f"{role:8} {method:55} {rate:8.2f} img/s", flush=True)
    prompt = vlm.model_inputs(captions[:1])["attention_mask"].sum().item()
    print(json.dumps({"machine": platform.processor() or platform.machine(), "torch_threads": torch.get_num_threads(),
                      "torch": torch.__version__, "transformers": transformers.__version__,
                      "settings": vars(args), "caption_prompt_tokens": prompt, "results": results}, indent=2))


if __name__ == "__main__":
    main()
