"""GPU benchmark of the captioner on a BLIP-base-shaped random model (one GPU, no network).

Three ways to caption the same JPEG images with the same weights:
  naive     fp32, `generate` one image at a time (decode + preprocess included)
  plain     bf16, `generate` on batches of --batch preprocessed images (GPU work only)
  handler   llavaforge's CaptionerHandler (bf16, batches of --batch, decode + preprocess included)
Prints images/s and the ratios; writes JSON. The model is built from its config (random
weights: speed depends on shapes, not values), saved once to a temporary folder and loaded
by the handler through from_pretrained, like a hub model.

    python bench/gpu_annotate.py                 # one H100: BLIP-base shape, 384 px, batch 256
    python bench/gpu_annotate.py --smoke         # any CPU: tiny shapes, a few images
"""

from __future__ import annotations

import argparse
import io
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import transformers as tf
from PIL import Image

from llavaforge.models.captioner import CaptionerHandler
from llavaforge.models.config import CaptionerConfig
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny shapes on CPU: checks the script runs")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--images", type=int, default=1024, help="images for the batched runs")
    parser.add_argument("--naive-images", type=int, default=32, help="images for the batch-1 loop")
    parser.add_argument("--new-tokens", type=int, default=20)
    parser.add_argument("--out", default="bench/results/gpu_annotate.json")
    args = parser.parse_args()
    if args.smoke:
        args.batch, args.images, args.naive_images = 4, 8, 4
    device = "cpu" if args.smoke else "cuda"
    if device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no GPU visible to torch: run with --smoke on a CPU")
    generate_kwargs = {"max_new_tokens": args.new_tokens, "min_new_tokens": args.new_tokens, "num_beams": 1,
                       "do_sample": False}

    folder = Path(tempfile.mkdtemp(prefix="llavaforge-blip-bench-"))
    size = build_model(folder, args.smoke)
    records = jpeg_records(args.images)
    processor = tf.BlipProcessor.from_pretrained(folder)
    results = {}

    # naive: fp32, one image at a time, decode + preprocess + generate
    fp32 = tf.BlipForConditionalGeneration.from_pretrained(folder, dtype=torch.float32).to(device).eval()

    def naive():
        for record in records[:args.naive_images]:
            image = Image.open(io.BytesIO(record.image.data)).convert("RGB")
            inputs = processor(images=[image], return_tensors="pt").to(device)
            fp32.generate(**inputs, **generate_kwargs)

    with torch.inference_mode():
        naive()  # warm-up
        results["naive_fp32_batch1"] = args.naive_images / timed(naive, device)
    del fp32

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

    # llavaforge's handler: decode + preprocess + generate, through from_pretrained
    handler = CaptionerHandler(CaptionerConfig(
        model=str(folder), kind="blip", device=device, dtype="fp32" if args.smoke else "bf16",
        max_batch_size=args.batch, max_new_tokens=args.new_tokens))
    model = handler.load_model()

    def run_handler():
        for i in range(0, batches * args.batch, args.batch):
            handler.run_inference(records[i:i + args.batch], model)

    handler.run_inference(records[:args.batch], model)  # warm-up
    results["llavaforge_handler"] = batches * args.batch / timed(run_handler, device)

    ratios = {"handler_vs_naive": results["llavaforge_handler"] / results["naive_fp32_batch1"],
              "handler_vs_plain_batched": results["llavaforge_handler"] / results["plain_batched_generate"]}
    for name, value in results.items():
        print(f"{name:<26}{value:>10.1f} img/s")
    for name, value in ratios.items():
        print(f"{name:<26}{value:>10.2f}x")
    meta = {"device": torch.cuda.get_device_name() if device == "cuda" else platform.processor() or "cpu",
            "smoke": args.smoke, "image_size": size, "batch": args.batch, "images": args.images,
            "new_tokens": args.new_tokens, "torch": torch.__version__, "transformers": tf.__version__}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"meta": meta, "images_per_s": results, "ratios": ratios}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
