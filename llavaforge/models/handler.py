"""The Beam `ModelHandler` every vision role shares: records in, annotations out.

A handler receives a batch of `ImageRecord`s, decodes their images to RGB on a few threads
(PIL releases the GIL while decoding), runs its model once on the whole batch and returns
one `PredictionResult(record, annotations, model name)` per record. Any failure fails the
batch; `transforms.annotate` then retries it image by image to find the bad one.
"""

from __future__ import annotations

import io
import os
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from typing import Any, Iterable, Optional, Sequence

import torch
from apache_beam.ml.inference.base import ModelHandler, PredictionResult
from PIL import Image

from llavaforge.models.config import ModelConfig
from llavaforge.models.loading import LoadedModel, load_shared
from llavaforge.schemas.record import ImageRecord

Annotation = Any  # Caption | DetectedObject | Tag | OcrText


def decode_rgb(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    return image.convert("RGB")


@lru_cache(maxsize=1)
def _decode_pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1), thread_name_prefix="llavaforge-decode")


def decode_batch(records: Sequence[ImageRecord]) -> list[Image.Image]:
    if len(records) == 1:
        return [decode_rgb(records[0].image.data)]
    return list(_decode_pool().map(decode_rgb, [r.image.data for r in records]))


def clamp_box(x1: float, y1: float, x2: float, y2: float) -> list[float]:
    """[x1, y1, x2, y2] inside 0..1 with x1 <= x2 and y1 <= y2, whatever the model returned."""
    xs = sorted(min(1.0, max(0.0, float(v))) for v in (x1, x2))
    ys = sorted(min(1.0, max(0.0, float(v))) for v in (y1, y2))
    return [xs[0], ys[0], xs[1], ys[1]]


class VisionModelHandler(ModelHandler[ImageRecord, PredictionResult, LoadedModel]):
    """Subclasses name their role and implement `load` (path -> LoadedModel) and `annotate`."""

    role = "vision"

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(min_batch_size=config.min_batch_size, max_batch_size=config.max_batch_size)
        self.config = config

    @property
    def model_name(self) -> str:
        return self.config.display_name

    def load(self, path: str, config: ModelConfig) -> LoadedModel:
        raise NotImplementedError

    def annotate(self, images: list[Image.Image], model: LoadedModel) -> list[list[Annotation]]:
        """One list of annotations per image, in order."""
        raise NotImplementedError

    def load_model(self) -> LoadedModel:
        return load_shared(self.role, self.config, self.load)

    def run_inference(self, batch: Sequence[ImageRecord], model: LoadedModel,
                      inference_args: Optional[dict[str, Any]] = None) -> Iterable[PredictionResult]:
        images = decode_batch(batch)
        with torch.inference_mode():
            outputs = self.annotate(images, model)
        if len(outputs) != len(batch):
            raise RuntimeError(f"{self.role} returned {len(outputs)} results for {len(batch)} images")
        return [PredictionResult(record, items, self.model_name) for record, items in zip(batch, outputs)]

    def get_num_bytes(self, batch: Sequence[ImageRecord]) -> int:
        return sum(len(r.image.data) for r in batch)

    def get_metrics_namespace(self) -> str:
        return f"annotate_{self.role}"

    def to_device(self, inputs: Any, model: LoadedModel) -> Any:
        """Processor outputs on the model's device, floating tensors in its dtype."""
        return {name: (t.to(model.device, model.dtype) if torch.is_floating_point(t) else t.to(model.device))
                for name, t in inputs.items()}
