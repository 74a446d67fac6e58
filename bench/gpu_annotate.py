"""GPU benchmark of the captioner on a BLIP-base-shaped random model (one GPU, no network).

Ways to caption the same JPEG images with the same weights:
  naive     fp32, `generate` one image at a time (decode + preprocess included)
  plain     bf16, `generate` on batches of --batch preprocessed images (GPU work only): the baseline
  handler variants: llavaforge's CaptionerHandler, bf16, JPEG decode + preprocessing included
    handler_b{batch}_generate             batches of --batch, transformers' `generate` (static_decode off)
    handler_b{batch}                      batches of --batch, llavaforge's greedy loop (static caches,
                                          one-token step compiled with CUDA graphs): the cuda default
    handler_b{big_batch}                  the same at --big-batch
    handler_b{big_batch}_compiled_vision  the same with the image encoder compiled too
Each variant runs one untimed warm-up batch first (compilation happens there; its time is
recorded as warmup_s), records whether its batches were decoded on the GPU (nvjpeg) or fell
back to PIL, and its error if it failed; the JSON is rewritten after every step, so a run cut
short keeps what it measured. Prints images/s and ratios against plain and naive.

The model is built from its config (random weights: speed depends on shapes, not values),
saved once to a temporary folder and loaded by the handler through from_pretrained, like a
hub model. Each variant also reports the share of its first batch's captions equal to the
first variant's (`generate`), so a faster path that captions differently shows up.

    python bench/gpu_annotate.py                 # one H100: BLIP-base shape, 384 px; about 100 s
    python bench/gpu_annotate.py --smoke         # any CPU: tiny shapes, a few images, no compile
"""

from __future__ import annotations

import argparse
import io
import json
import platform
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np
import torch
import transformers as tf
from PIL import Image

from llavaforge.models.captioner import CaptionerHandler
from llavaforge.config.annotate import CaptionerConfig
from llavaforge.models.handler import decode_batch, decode_batch_on, is_torchvision_backed, processor_image_kwargs
from llavaforge.schemas.record import ImageInfo, ImageRecord, Source, content_key


def build_model(folder: Path, smoke: bool) -> int:
    """Save a random BLIP (base shape, or tiny for --smoke) with processor; returns its image size."""
    torch.manual_seed(0)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(30519 if not smoke else 200)]
    tokenizer = tf.BertTokenizer(vocab={tok: i for i, tok in enumerate(vocab)})
    special = dict(bos_token_id=tokenizer.cls_token_id, sep_token_id=tokenizer.sep_token_id,
                   pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.sep_token_id)
    if smoke:
        size = 32
        config = tf.BlipConfig(
            text_config=dict(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                             intermediate_size=64, **special),
            vision_config=dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                               image_size=size, patch_size=8), projection_dim=32)
    else:
        size = 384  # BLIP-base captioning: ViT-B/16 at 384 px + BERT-base decoder
        config = tf.BlipConfig(text_config=dict(vocab_size=len(vocab), **special),
                               vision_config=dict(image_size=size, patch_size=16))
    model = tf.BlipForConditionalGeneration(config)
    model.to(torch.bfloat16).save_pretrained(folder)
    image_processor = tf.BlipImageProcessor(size={"height": size, "width": size})
    tf.BlipProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(folder)
    return size


def jpeg_records(n: int, seed: int = 0) -> list[ImageRecord]:
    rng = np.random.default_rng(seed)
    records = []
    for i in range(n):
        # smooth noise compresses like a photo and decodes at a photo's cost
        small = rng.integers(0, 256, size=(24, 32, 3), dtype=np.uint8)
        image = Image.fromarray(small).resize((512, 384), Image.Resampling.BICUBIC)
        out = io.BytesIO()
        image.save(out, format="JPEG", quality=90)
        data = out.getvalue()
        records.append(ImageRecord(key=content_key(data), source=Source("bench", str(i)),
                                   image=ImageInfo(data, "jpg", 512, 384, "", "")))
    return records


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def timed(fn, device: str) -> float:
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


def inductor_counters() -> dict[str, Any]:
    """What torch.compile did so far: graphs, graph breaks, attention patterns fused into SDPA."""
    from torch._dynamo.utils import counters

    return {"unique_graphs": counters["stats"]["unique_graphs"], "graph_breaks": dict(counters["graph_break"]),
            "fused_attention_patterns": counters["inductor"]["fuse_attention"]}


def torchvision_version() -> str | None:
    try:
        import torchvision
    except Exception as e:  # noqa: BLE001 -- report why, do not fail
        return f"not importable: {type(e).__name__}: {e}"
    return torchvision.__version__


def gpu_vs_pil_pixels(handler: CaptionerHandler, model, records: list[ImageRecord]) -> float | None:
    """Largest |difference| of pixel_values between the GPU path (nvjpeg + processor on the GPU) and PIL's."""
    if not handler.decodes_on_gpu(records, model):
        return None
    with torch.inference_mode():
        on_gpu = decode_batch_on(records, model.device)
        gpu = model.processor(images=on_gpu, return_tensors="pt", **processor_image_kwargs(on_gpu))["pixel_values"]
        pil = model.processor(images=decode_batch(records), return_tensors="pt")["pixel_values"]
    return float((gpu.float().cpu() - pil.float()).abs().max())


def run_variant(name: str, folder: Path, records: list[ImageRecord], batch: int, compile_vision: bool,
                static_decode: bool, fused_attention: bool, args, device: str) -> tuple[dict[str, Any], list[str]]:
    """The variant's numbers, and its captions of the first batch (to compare the variants' output)."""
    config = CaptionerConfig(
        model=str(folder), kind="blip", device=device, dtype="fp32" if args.smoke else "bf16",
        min_batch_size=batch, max_batch_size=batch, max_new_tokens=args.new_tokens, compile_vision=compile_vision,
        static_decode=static_decode, fused_attention=fused_attention)
    handler = CaptionerHandler(config)
    model = handler.load_model()
    result: dict[str, Any] = {"batch": batch, "compile_vision": compile_vision, "static_decode": static_decode,
                              "fused_attention": fused_attention,
                              "image_processor": type(getattr(model.processor, "image_processor", None)).__name__,
                              "torchvision_backed_processor": is_torchvision_backed(model.processor),
                              "gpu_decode_eligible": handler.decodes_on_gpu(records[:batch], model)}
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    first: list = []
    result["warmup_s"] = round(timed(lambda: first.extend(handler.run_inference(records[:batch], model)), device), 2)
    warmup_counts = dict(handler.decode_counts)
    batches = max(1, len(records) // batch)

    def run():
        for i in range(batches):
            handler.run_inference(records[i * batch:(i + 1) * batch], model)

    seconds = timed(run, device)
    counts = {k: handler.decode_counts[k] - warmup_counts.get(k, 0) for k in ("gpu_batches", "gpu_fallbacks")}
    result.update(images=batches * batch, seconds=round(seconds, 3), images_per_s=batches * batch / seconds,
                  decode="gpu" if counts["gpu_batches"] == batches else "pil" if not counts["gpu_batches"] else "mixed",
                  timed_decode_counts=counts, warmup_decode_counts=warmup_counts)
    if device == "cuda":
        result["peak_memory_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 1)
    if compile_vision:
        result["compile"] = inductor_counters()
    if not static_decode and not compile_vision:
        result["gpu_vs_pil_pixels_max_abs_diff"] = gpu_vs_pil_pixels(handler, model, records[:8])
    return result, [r.inference[0].text for r in first]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny shapes on CPU, no compile: checks the script runs")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--big-batch", type=int, default=1024, help="batch of the large-batch compiled variant")
    parser.add_argument("--images", type=int, default=1024, help="images for the batched runs at --batch")
    parser.add_argument("--big-images", type=int, default=2048, help="images for the --big-batch run")
    parser.add_argument("--naive-images", type=int, default=32, help="images for the batch-1 loop")
    parser.add_argument("--new-tokens", type=int, default=20)
    parser.add_argument("--time-limit", type=float, default=140.0,
                        help="seconds after which no further variant starts (each is recorded as skipped)")
    parser.add_argument("--out", default="bench/results/gpu_annotate.json")
    args = parser.parse_args()
    if args.smoke:
        args.batch, args.big_batch, args.images, args.big_images, args.naive_images = 4, 8, 8, 16, 4
    device = "cpu" if args.smoke else "cuda"
    if device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no GPU visible to torch: run with --smoke on a CPU")
    started = time.perf_counter()
    generate_kwargs = {"max_new_tokens": args.new_tokens, "min_new_tokens": args.new_tokens, "num_beams": 1,
                       "do_sample": False}

    folder = Path(tempfile.mkdtemp(prefix="llavaforge-blip-bench-"))
    size = build_model(folder, args.smoke)
    records = jpeg_records(max(args.images, args.big_images))
    processor = tf.BlipProcessor.from_pretrained(folder)
    results: dict[str, float] = {}
    variants: dict[str, dict[str, Any]] = {}
    ratios: dict[str, float] = {}
    meta = {"device": torch.cuda.get_device_name() if device == "cuda" else platform.processor() or "cpu",
            "smoke": args.smoke, "image_size": size, "batch": args.batch, "big_batch": args.big_batch,
            "images": args.images, "big_images": args.big_images, "new_tokens": args.new_tokens,
            "torch": torch.__version__, "transformers": tf.__version__, "torchvision": torchvision_version(),
            "plain_image_processor": type(processor.image_processor).__name__}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)

    def write() -> None:
        meta["elapsed_s"] = round(time.perf_counter() - started, 1)
        out.write_text(json.dumps({"meta": meta, "images_per_s": results, "ratios": ratios, "variants": variants},
                                  indent=2))

    # naive: fp32, one image at a time, decode + preprocess + generate
    fp32 = tf.BlipForConditionalGeneration.from_pretrained(folder, dtype=torch.float32).to(device).eval()

    def naive(n: int):
        for record in records[:n]:
            image = Image.open(io.BytesIO(record.image.data)).convert("RGB")
            inputs = processor(images=[image], return_tensors="pt").to(device)
            fp32.generate(**inputs, **generate_kwargs)

    with torch.inference_mode():
        naive(1)  # warm-up
        results["naive_fp32_batch1"] = args.naive_images / timed(lambda: naive(args.naive_images), device)
    del fp32
    write()

    # plain: bf16 batched generate on preprocessed pixels (GPU work only)
    dtype = torch.float32 if args.smoke else torch.bfloat16
    plain_model = tf.BlipForConditionalGeneration.from_pretrained(folder, dtype=dtype).to(device).eval()
    images = [Image.open(io.BytesIO(r.image.data)).convert("RGB") for r in records[:args.batch]]
    pixels = processor(images=images, return_tensors="pt")["pixel_values"].to(device, dtype)
    batches = max(1, args.images // args.batch)

    def plain():
        for _ in range(batches):
            plain_model.generate(pixel_values=pixels, **generate_kwargs)

    with torch.inference_mode():
        plain_model.generate(pixel_values=pixels, **generate_kwargs)  # warm-up
        results["plain_batched_generate"] = batches * len(images) / timed(plain, device)
    del plain_model
    if device == "cuda":
        torch.cuda.empty_cache()
    write()

    # llavaforge's handler: decode + preprocess + generate, through from_pretrained
    # (name, images, batch, compile_vision, static_decode, fused_attention); the first is the
    # reference for caption agreement
    plan = [(f"handler_b{args.batch}_generate", args.images, args.batch, False, False, False),
            (f"handler_b{args.batch}", args.images, args.batch, False, True, False),
            (f"handler_b{args.batch}_fused", args.images, args.batch, False, True, True),
            (f"handler_b{args.big_batch}_fused", args.big_images, args.big_batch, False, True, True),
            (f"handler_b{args.big_batch}_fused_compiled_vision", args.big_images, args.big_batch, True, True, True)]
    reference: list[str] = []
    for name, n_images, batch, compile_vision, static_decode, fused_attention in plan:
        if time.perf_counter() - started > args.time_limit:
            variants[name] = {"skipped": f"time limit {args.time_limit:.0f} s reached"}
            write()
            continue
        try:
            # smoke keeps compile off: CPU inductor would take most of a minute for nothing measured
            variants[name], first = run_variant(name, folder, records[:n_images], batch,
                                                compile_vision and not args.smoke, static_decode, fused_attention,
                                                args, device)
            reference = reference or first
            shared = min(len(first), len(reference))
            variants[name]["captions_equal_reference"] = sum(a == b for a, b in zip(first, reference)) / shared
            results[name] = variants[name]["images_per_s"]
            ratios[f"{name}_vs_plain_b{args.batch}"] = results[name] / results["plain_batched_generate"]
            ratios[f"{name}_vs_naive"] = results[name] / results["naive_fp32_batch1"]
        except Exception as e:  # noqa: BLE001 -- one failing variant must not lose the others
            variants[name] = {"error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()[-3000:]}
            print(f"{name} failed: {type(e).__name__}: {e}")
        if device == "cuda":
            torch.cuda.empty_cache()
        write()

    for name, value in results.items():
        details = variants.get(name)
        extra = (f"  decode {details['decode']} ({details['timed_decode_counts']['gpu_fallbacks']} fallbacks), "
                 f"warm-up {details['warmup_s']} s") if details else ""
        print(f"{name:<34}{value:>10.1f} img/s{extra}")
    for name, details in variants.items():
        if "images_per_s" not in details:
            print(f"{name:<34}{'-':>10}       {details.get('error') or details.get('skipped')}")
    for name, value in ratios.items():
        print(f"{name:<34}{value:>10.2f}x")
    write()
    print(f"wrote {out} ({meta['elapsed_s']} s)")


if __name__ == "__main__":
    main()
