"""CPU benchmark of the annotate handlers: batched (llavaforge) vs a plain one-image-at-a-time loop.

Both sides run the same loaded model on the same images, decode and preprocessing included;
the baseline calls the model once per image, the handler once per batch. One run, both
measured in it; prints images/s and the ratio per model.

    /work/venv/bin/python bench/annotate_cpu.py [--images 48] [--batch 16]
"""

from __future__ import annotations

import argparse
import io
import json
import platform
import tarfile
import time
from pathlib import Path

import numpy as np
import torch
import transformers
from PIL import Image

from llavaforge.models.captioner import CaptionerHandler
from llavaforge.config.annotate import CaptionerConfig, DetectorConfig, TaggerConfig
from llavaforge.models.detector import DetectorHandler
from llavaforge.config.presets import PRESETS
from llavaforge.models.tagger import TaggerHandler
from llavaforge.schemas.record import ImageInfo, ImageRecord, Source, content_key

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "sample-000.tar"
TINY = PRESETS["tiny"].roles


def sample_records(n: int) -> list[ImageRecord]:
    """The bundled photos (downscaled to 512 px), cycled with small pixel changes so keys differ."""
    with tarfile.open(EXAMPLES) as tar:
        photos = [Image.open(io.BytesIO(tar.extractfile(m).read())).convert("RGB")
                  for m in tar.getmembers() if m.name.endswith(".jpg") and m.name != "broken.jpg"]
    records = []
    for i in range(n):
        pixels = np.asarray(photos[i % len(photos)]).copy()
        pixels[0, 0] = i % 256
        out = io.BytesIO()
        Image.fromarray(pixels).save(out, format="JPEG", quality=90)
        data = out.getvalue()
        records.append(ImageRecord(key=content_key(data), source=Source("bench", str(i)),
                                   image=ImageInfo(data, "jpg", pixels.shape[1], pixels.shape[0], "", "")))
    return records


def images_per_second(handler, records, batch: int) -> float:
    model = handler.load_model()
    handler.run_inference(records[:batch], model)  # warm-up: first-call allocations
    start = time.perf_counter()
    for i in range(0, len(records), batch):
        handler.run_inference(records[i:i + batch], model)
    return len(records) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=48)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()

    cases = {
        "tiny captioner (BLIP)": CaptionerHandler(CaptionerConfig(**TINY["captioner"].config)),
        "tiny detector (RT-DETR)": DetectorHandler(DetectorConfig(**TINY["detector"].config)),
        "tiny tagger (CLIP)": TaggerHandler(TaggerConfig(**TINY["tagger"].config)),
        "offline tagger (EfficientNet-Lite0)": TaggerHandler(TaggerConfig(**PRESETS["offline"].roles["tagger"].config)),
    }
    records = sample_records(args.images)
    results = {}
    print(f"{'model':<38}{'loop img/s':>12}{'batched img/s':>15}{'ratio':>8}")
    for name, handler in cases.items():
        loop = images_per_second(handler, records, 1)
        batched = images_per_second(handler, records, args.batch)
        results[name] = {"loop_images_per_s": round(loop, 1), "batched_images_per_s": round(batched, 1),
                         "ratio": round(batched / loop, 2)}
        print(f"{name:<38}{loop:>12.1f}{batched:>15.1f}{batched / loop:>7.2f}x")
    meta = {"images": args.images, "batch": args.batch, "torch_threads": torch.get_num_threads(),
            "python": platform.python_version(), "torch": torch.__version__,
            "transformers": transformers.__version__, "processor": platform.processor() or platform.machine()}
    print(json.dumps(meta))
    if args.json:
        Path(args.json).write_text(json.dumps({"meta": meta, "results": results}, indent=2))


if __name__ == "__main__":
    main()
