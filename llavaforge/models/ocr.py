"""OCR role: RapidOCR (PP-OCRv4 detection + recognition, ONNX) from the `rapidocr-onnxruntime` package.

RapidOCR takes one image at a time (text regions differ per image), so a batch is a loop
here; the ONNX runtime uses several threads per image.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from llavaforge.config.annotate import OcrConfig
from llavaforge.models.handler import VisionModelHandler, clamp_box
from llavaforge.models.loading import LoadedModel
from llavaforge.schemas.record import OcrText

RAPIDOCR = "rapidocr"


class OcrHandler(VisionModelHandler):
    role = "ocr"
    config: OcrConfig

    def load(self, path: str, config: OcrConfig) -> LoadedModel:
        if path != RAPIDOCR:
            raise ValueError(f"kind rapidocr runs the models shipped in its package: set model to {RAPIDOCR!r}")
        from rapidocr_onnxruntime import RapidOCR

        engine = RapidOCR(text_score=config.score_threshold, use_cuda=config.device == "cuda")
        return LoadedModel(engine, None, None, torch.device(config.device), torch.float32, {})

    def annotate(self, images: list[Image.Image], model: LoadedModel) -> list[list[OcrText]]:
        return [self._lines(image, model) for image in images]

    def _lines(self, image: Image.Image, model: LoadedModel) -> list[OcrText]:
        bgr = np.ascontiguousarray(np.asarray(image)[:, :, ::-1])  # RapidOCR reads arrays as OpenCV BGR
        found, _ = model.model(bgr)
        lines = []
        for quad, text, score in found or []:
            points = np.asarray(quad, dtype=np.float32)
            x1, y1 = points.min(axis=0) / (image.width, image.height)
            x2, y2 = points.max(axis=0) / (image.width, image.height)
            if text.strip() and float(score) >= self.config.score_threshold:
                lines.append(OcrText(text=text.strip(), score=min(1.0, float(score)),
                                     box=clamp_box(x1, y1, x2, y2), model=self.model_name))
        kept = sorted(lines, key=lambda line: -line.score)[: self.config.max_lines]
        return sorted(kept, key=lambda line: (round(line.box[1], 2), line.box[0]))  # reading order
