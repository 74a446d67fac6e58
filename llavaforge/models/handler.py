"""The Beam `ModelHandler` every vision role shares: records in, annotations out.

A handler receives a batch of `ImageRecord`s, decodes their images to RGB, runs its model
once on the whole batch and returns one `PredictionResult(record, annotations, model name)`
per record. Any failure fails the batch; `transforms.annotate` then retries it image by image
to find the bad one.

Decoding has two paths:
- PIL on a few threads (PIL releases the GIL while decoding): the images are PIL images.
- GPU (roles with `gpu_decode`, model on cuda, every image a JPEG, a torchvision-backed
  image processor, torchvision importable): nvjpeg decodes the batch on the model's device
  into CHW uint8 tensors and the processor resizes and normalises them there, so no image
  touches a CPU core after its bytes. Any failure on that path reruns the batch on the PIL
  path (logged once per handler, counted in `decode_counts` and a Beam counter).
"""

from __future__ import annotations

import io
import logging
import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from typing import Any, Callable, Iterable, Optional, Sequence, Union

import torch
from apache_beam.metrics import Metrics
from apache_beam.ml.inference.base import ModelHandler, PredictionResult
from PIL import Image

from llavaforge.config.annotate import ModelConfig
from llavaforge.models.loading import LoadedModel, load_shared
from llavaforge.schemas.record import ImageInfo, ImageRecord

Annotation = Any  # Caption | DetectedObject | Tag | OcrText
DecodedImage = Union[Image.Image, torch.Tensor]  # PIL RGB image, or CHW uint8 RGB tensor on the model's device
JPEG_MAGIC = b"\xff\xd8"
JPEG_FORMATS = ("jpg", "jpeg")

logger = logging.getLogger(__name__)


def decode_rgb(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    return image.convert("RGB")


@lru_cache(maxsize=1)
def _decode_pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1), thread_name_prefix="llavaforge-decode")


def decode_images(images: Sequence[ImageInfo]) -> list[Image.Image]:
    if len(images) == 1:
        return [decode_rgb(images[0].data)]
    return list(_decode_pool().map(decode_rgb, [image.data for image in images]))


def decode_batch(records: Sequence[ImageRecord]) -> list[Image.Image]:
    return decode_images([r.image for r in records])


def is_jpeg_image(image: ImageInfo) -> bool:
    return image.format.lower() in JPEG_FORMATS or image.data[:2] == JPEG_MAGIC


def is_jpeg(record: ImageRecord) -> bool:
    return is_jpeg_image(record.image)


@lru_cache(maxsize=1)
def torchvision_jpeg_decoder() -> Optional[Callable[[list[torch.Tensor], torch.device], list[torch.Tensor]]]:
    """`(encoded uint8 tensors, device) -> CHW uint8 RGB tensors` through torchvision, or None without it.

    Imported on first use only: CPU runs never import torchvision, and a torchvision that
    cannot load (absent, or built for another torch/CUDA) only turns the GPU path off.
    """
    try:
        from torchvision.io import ImageReadMode, decode_jpeg
    except Exception as e:  # noqa: BLE001 -- ImportError, or OSError/RuntimeError from mismatched native libs
        logger.info("GPU JPEG decoding unavailable (torchvision does not import: %s)", e)
        return None

    def decode(encoded: list[torch.Tensor], device: torch.device) -> list[torch.Tensor]:
        return decode_jpeg(encoded, device=device, mode=ImageReadMode.RGB)

    return decode


def decode_images_on(images: Sequence[ImageInfo], device: torch.device) -> list[torch.Tensor]:
    """JPEGs decoded on `device` in one batched call (nvjpeg on cuda)."""
    decoder = torchvision_jpeg_decoder()
    if decoder is None:
        raise RuntimeError("torchvision is not available")
    encoded = [torch.frombuffer(bytearray(image.data), dtype=torch.uint8) for image in images]
    return list(decoder(encoded, device))


def decode_batch_on(records: Sequence[ImageRecord], device: torch.device) -> list[torch.Tensor]:
    """The JPEGs of `records` decoded on `device` in one batched call (nvjpeg on cuda)."""
    return decode_images_on([r.image for r in records], device)


def is_torchvision_backed(processor: Any) -> bool:
    """Whether the processor's image part runs on torch tensors (transformers' torchvision backend,
    the `*ImageProcessorFast` classes of earlier 5.x), so it can resize images already on a GPU."""
    image_processor = getattr(processor, "image_processor", processor)
    if getattr(image_processor, "backend", None) == "torchvision":
        return True
    return any(cls.__name__ == "BaseImageProcessorFast" for cls in type(image_processor).__mro__)


def image_size(image: DecodedImage) -> tuple[int, int]:
    """(width, height) of a PIL image or a CHW tensor."""
    if isinstance(image, torch.Tensor):
        return int(image.shape[-1]), int(image.shape[-2])
    return image.size


def processor_image_kwargs(images: Sequence[DecodedImage]) -> dict:
    """Extra image-processor arguments: tensors decoded on a device are processed there, channels first."""
    if images and isinstance(images[0], torch.Tensor):
        return {"device": images[0].device, "input_data_format": "channels_first"}
    return {}


def clamp_box(x1: float, y1: float, x2: float, y2: float) -> list[float]:
    """[x1, y1, x2, y2] inside 0..1 with x1 <= x2 and y1 <= y2, whatever the model returned."""
    xs = sorted(min(1.0, max(0.0, float(v))) for v in (x1, x2))
    ys = sorted(min(1.0, max(0.0, float(v))) for v in (y1, y2))
    return [xs[0], ys[0], xs[1], ys[1]]


class VisionModelHandler(ModelHandler[ImageRecord, PredictionResult, LoadedModel]):
    """Subclasses name their role and implement `load` (path -> LoadedModel) and `annotate`.

    `annotate` receives `DecodedImage`s: PIL images, or CHW uint8 tensors on the model's device
    when `gpu_decode` is on and the batch qualifies (see the module doc); it passes
    `processor_image_kwargs(images)` to its image processor and uses `image_size` for sizes.
    """

    role = "vision"
    gpu_decode = False  # roles whose annotate takes device tensors turn this on

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(min_batch_size=config.min_batch_size, max_batch_size=config.max_batch_size)
        self.config = config
        # "gpu_batches": batches decoded on the GPU; "gpu_fallbacks": GPU-path batches rerun through PIL
        self.decode_counts: Counter = Counter()

    @property
    def model_name(self) -> str:
        return self.config.display_name

    def load(self, path: str, config: ModelConfig) -> LoadedModel:
        raise NotImplementedError

    def annotate(self, images: list[DecodedImage], model: LoadedModel) -> list[list[Annotation]]:
        """One list of annotations per image, in order."""
        raise NotImplementedError

    def load_model(self) -> LoadedModel:
        return load_shared(self.role, self.config, self.load)

    def decodes_on_gpu(self, batch: Sequence[ImageRecord], model: LoadedModel) -> bool:
        """Whether this batch takes the GPU decode path (cheap checks first: CPU runs never import torchvision)."""
        return (self.gpu_decode and model.device.type == "cuda" and all(is_jpeg(r) for r in batch)
                and is_torchvision_backed(model.processor) and torchvision_jpeg_decoder() is not None)

    def run_inference(self, batch: Sequence[ImageRecord], model: LoadedModel,
                      inference_args: Optional[dict[str, Any]] = None) -> Iterable[PredictionResult]:
        with torch.inference_mode():
            outputs = self._annotate_batch(batch, model)
        if len(outputs) != len(batch):
            raise RuntimeError(f"{self.role} returned {len(outputs)} results for {len(batch)} images")
        return [PredictionResult(record, items, self.model_name) for record, items in zip(batch, outputs)]

    def _annotate_batch(self, batch: Sequence[ImageRecord], model: LoadedModel) -> list[list[Annotation]]:
        if self.decodes_on_gpu(batch, model):
            try:
                outputs = self.annotate(decode_batch_on(batch, model.device), model)
            except Exception as e:  # noqa: BLE001 -- any failure on the GPU path: the PIL path decides
                self._count_fallback(e)
            else:
                self.decode_counts["gpu_batches"] += 1
                return outputs
        return self.annotate(decode_batch(batch), model)

    def _count_fallback(self, error: Exception) -> None:
        if not self.decode_counts["gpu_fallbacks"]:
            logger.warning("annotate.%s: GPU decode path failed (%s: %s); rerunning the batch with PIL decoding "
                           "(logged once; later fallbacks are only counted)", self.role, type(error).__name__, error)
        self.decode_counts["gpu_fallbacks"] += 1
        Metrics.counter(self.get_metrics_namespace(), "gpu_decode_fallbacks").inc()

    def get_num_bytes(self, batch: Sequence[ImageRecord]) -> int:
        return sum(len(r.image.data) for r in batch)

    def get_metrics_namespace(self) -> str:
        return f"annotate_{self.role}"

    def to_device(self, inputs: Any, model: LoadedModel) -> Any:
        """Processor outputs on the model's device, floating tensors in its dtype."""
        return {name: (t.to(model.device, model.dtype) if torch.is_floating_point(t) else t.to(model.device))
                for name, t in inputs.items()}
