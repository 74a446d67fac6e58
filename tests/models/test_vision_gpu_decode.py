"""The GPU decode path of the vision handlers, on CPU: when it is taken, what annotate receives,
the PIL fallback; and that every role's annotate gives the same result for CHW tensors as for PIL images."""

from __future__ import annotations

import io
import logging
import sys
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from llavaforge.models import handler as handler_module
from llavaforge.models.captioner import CaptionerHandler
from llavaforge.config.annotate import CaptionerConfig, DetectorConfig, ModelConfig, TaggerConfig
from llavaforge.models.detector import DetectorHandler
from llavaforge.models.handler import (VisionModelHandler, decode_batch, image_size, is_jpeg, is_torchvision_backed,
                                       processor_image_kwargs)
from llavaforge.models.loading import LoadedModel
from llavaforge.models.tagger import EfficientNetPreprocessor, TaggerHandler
from llavaforge.schemas.record import ImageInfo
from tests.conftest import image_bytes
from tests.models.vision_samples import mixed_sizes, poisoned, record_of

TORCHVISION_PROCESSOR = SimpleNamespace(image_processor=SimpleNamespace(backend="torchvision"))
ON_CUDA = LoadedModel(None, TORCHVISION_PROCESSOR, None, torch.device("cuda"), torch.float32)


def chw(image: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.array(image)).permute(2, 0, 1).contiguous()


def pil_backed_decoder(encoded: list[torch.Tensor], device: torch.device) -> list[torch.Tensor]:
    """Stands in for torchvision's decode_jpeg: same inputs, CHW uint8 RGB outputs (on the CPU, asked for `device`)."""
    assert device == torch.device("cuda") and all(t.dtype == torch.uint8 and t.ndim == 1 for t in encoded)
    return [chw(Image.open(io.BytesIO(t.numpy().tobytes())).convert("RGB")) for t in encoded]


def failing_decoder(encoded, device):
    raise RuntimeError("nvjpeg says no")


class RecordingHandler(VisionModelHandler):
    """Annotates each image with its (width, height) and keeps what annotate received."""

    role = "recording"
    gpu_decode = True

    def __init__(self) -> None:
        super().__init__(ModelConfig(model="recording"))
        self.received: list[list] = []

    def annotate(self, images, model):
        self.received.append(images)
        return [[image_size(image)] for image in images]


def _sizes(records) -> list[tuple[int, int]]:
    return [(r.image.width, r.image.height) for r in records]


def test_jpeg_is_known_by_format_or_magic_bytes():
    jpeg, png = record_of(image_bytes(8, 8)), record_of(image_bytes(8, 8, fmt="PNG"), "x.png")
    assert is_jpeg(jpeg)
    assert not is_jpeg(png.replace(image=ImageInfo(png.image.data, "png", 8, 8, "", "")))
    assert is_jpeg(jpeg.replace(image=ImageInfo(jpeg.image.data, "bin", 8, 8, "", "")))


def test_image_size_is_width_height_for_pil_and_chw_tensors():
    image = Image.new("RGB", (40, 30))
    assert image_size(image) == (40, 30)
    assert image_size(chw(image)) == (40, 30)


def test_processor_kwargs_only_for_tensors():
    assert processor_image_kwargs([Image.new("RGB", (4, 4))]) == {}
    assert processor_image_kwargs([torch.zeros(3, 4, 4, dtype=torch.uint8)]) == {
        "device": torch.device("cpu"), "input_data_format": "channels_first"}


def test_torchvision_backed_processors_are_recognised():
    assert is_torchvision_backed(TORCHVISION_PROCESSOR)
    assert is_torchvision_backed(SimpleNamespace(backend="torchvision"))
    assert is_torchvision_backed(type("BaseImageProcessorFast", (), {})())  # transformers 5.0-5.x class name
    assert not is_torchvision_backed(SimpleNamespace(image_processor=SimpleNamespace(backend="pil")))
    assert not is_torchvision_backed(EfficientNetPreprocessor())


def test_without_torchvision_the_gpu_path_is_off(monkeypatch):
    # the import fails even where torchvision is installed (and torchvision.io already imported)
    monkeypatch.setitem(sys.modules, "torchvision", None)
    monkeypatch.setitem(sys.modules, "torchvision.io", None)
    handler_module.torchvision_jpeg_decoder.cache_clear()
    try:
        assert handler_module.torchvision_jpeg_decoder() is None
        assert not RecordingHandler().decodes_on_gpu(mixed_sizes(), ON_CUDA)
    finally:
        handler_module.torchvision_jpeg_decoder.cache_clear()


def test_gpu_path_needs_cuda_jpegs_the_role_and_a_torchvision_processor(monkeypatch):
    monkeypatch.setattr(handler_module, "torchvision_jpeg_decoder", lambda: pil_backed_decoder)
    handler, records = RecordingHandler(), mixed_sizes()
    assert handler.decodes_on_gpu(records, ON_CUDA)
    png = record_of(image_bytes(8, 8, fmt="PNG"), "x.png")
    assert not handler.decodes_on_gpu(records + [png.replace(image=ImageInfo(png.image.data, "png", 8, 8, "", ""))],
                                      ON_CUDA)
    assert not handler.decodes_on_gpu(records, LoadedModel(None, TORCHVISION_PROCESSOR, None, torch.device("cpu"),
                                                           torch.float32))
    assert not handler.decodes_on_gpu(records, LoadedModel(None, EfficientNetPreprocessor(), None,
                                                           torch.device("cuda"), torch.float32))
    monkeypatch.setattr(RecordingHandler, "gpu_decode", False)  # OCR's setting
    assert not handler.decodes_on_gpu(records, ON_CUDA)


def test_gpu_path_hands_annotate_chw_tensors(monkeypatch):
    monkeypatch.setattr(handler_module, "torchvision_jpeg_decoder", lambda: pil_backed_decoder)
    handler, records = RecordingHandler(), mixed_sizes()
    results = handler.run_inference(records, ON_CUDA)
    (images,) = handler.received
    assert all(isinstance(i, torch.Tensor) and i.dtype == torch.uint8 and i.shape[0] == 3 for i in images)
    assert [r.inference for r in results] == [[size] for size in _sizes(records)]
    assert handler.decode_counts == {"gpu_batches": 1}


def test_failing_gpu_path_reruns_with_pil_and_warns_once(monkeypatch, caplog):
    monkeypatch.setattr(handler_module, "torchvision_jpeg_decoder", lambda: failing_decoder)
    handler, records = RecordingHandler(), mixed_sizes()
    with caplog.at_level(logging.WARNING, logger=handler_module.__name__):
        first = handler.run_inference(records, ON_CUDA)
        handler.run_inference(records, ON_CUDA)
    assert [r.inference for r in first] == [[size] for size in _sizes(records)]
    assert all(isinstance(i, Image.Image) for i in handler.received[-1])
    assert handler.decode_counts["gpu_fallbacks"] == 2 and not handler.decode_counts["gpu_batches"]
    assert [r.message for r in caplog.records if "nvjpeg says no" in r.message] != []
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1


def test_a_batch_failing_on_both_paths_fails(monkeypatch):
    monkeypatch.setattr(handler_module, "torchvision_jpeg_decoder", lambda: failing_decoder)
    with pytest.raises(OSError, match="truncated"):
        RecordingHandler().run_inference(mixed_sizes() + [poisoned()], ON_CUDA)


SAME_ON_TENSORS = [
    CaptionerHandler(CaptionerConfig(model="llavaforge-tiny/blip", kind="blip", max_new_tokens=4)),
    TaggerHandler(TaggerConfig(model="llavaforge-tiny/clip", kind="clip", top_k=2, score_threshold=0.0,
                               vocabulary=["cat", "cup", "sky"])),
    DetectorHandler(DetectorConfig(model="llavaforge-tiny/rt-detr", kind="rt-detr", score_threshold=0.0,
                                   max_objects=3)),
    DetectorHandler(DetectorConfig(model="llavaforge-tiny/owlv2", kind="owlv2", score_threshold=0.0, max_objects=3,
                                   labels=["cat", "cup"])),
]


def _rounded(annotations):
    def one(a):
        fields = dict(vars(a))
        for name in ("score", "box"):
            if name in fields:
                fields[name] = np.round(fields[name], 4).tolist()
        return fields
    return [[one(a) for a in items] for items in annotations]


@pytest.mark.parametrize("handler", SAME_ON_TENSORS, ids=lambda h: f"{h.role}-{h.config.kind}")
def test_annotate_takes_chw_tensors_like_pil_images(handler):
    model = handler.load_model()
    images = decode_batch(mixed_sizes())
    with torch.inference_mode():
        from_pil = handler.annotate(images, model)
        from_tensors = handler.annotate([chw(i) for i in images], model)
    assert _rounded(from_tensors) == _rounded(from_pil)
