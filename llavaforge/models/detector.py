"""Detector role: closed-vocabulary (DETR, RT-DETR) and open-vocabulary (OWLv2, OWL-ViT) detection.

Boxes are returned normalised to 0..1 of the image as stored: the processors' post-processing
is asked for relative boxes (no target sizes), and OWLv2's square padding is undone.
"""

from __future__ import annotations

import torch
import transformers as tf

from llavaforge.config.annotate import DetectorConfig
from llavaforge.models.handler import DecodedImage, VisionModelHandler, clamp_box, image_size, processor_image_kwargs
from llavaforge.models.labels import coco_classes
from llavaforge.models.loading import LoadedModel, hf_loaded
from llavaforge.schemas.record import DetectedObject

OPEN_VOCABULARY = ("owlv2", "owlvit")
# OWLv2 pads each image to a square (bottom/right) before resizing; OWL-ViT stretches it.
PADS_TO_SQUARE = ("owlv2",)


class DetectorHandler(VisionModelHandler):
    role = "detector"
    gpu_decode = True
    config: DetectorConfig

    @property
    def labels(self) -> list[str]:
        return list(self.config.labels or coco_classes())

    def load(self, path: str, config: DetectorConfig) -> LoadedModel:
        if config.kind in OPEN_VOCABULARY:
            return hf_loaded(tf.AutoModelForZeroShotObjectDetection, tf.AutoProcessor, path, config)
        return hf_loaded(tf.AutoModelForObjectDetection, tf.AutoImageProcessor, path, config)

    def _detections(self, images: list[DecodedImage], model: LoadedModel) -> list[dict]:
        """Per image: scores, label names and boxes relative to the model's input frame."""
        threshold = self.config.score_threshold
        on_device = processor_image_kwargs(images)
        if self.config.kind in OPEN_VOCABULARY:
            labels = self.labels
            inputs = model.processor(text=[labels] * len(images), images=images, return_tensors="pt", padding=True,
                                     **on_device)
            outputs = model.model(**self.to_device(inputs, model))
            results = model.processor.image_processor.post_process_object_detection(
                outputs, threshold=threshold)
            names = lambda ids: [labels[i] for i in ids.tolist()]  # noqa: E731
        else:
            inputs = model.processor(images=images, return_tensors="pt", **on_device)
            outputs = model.model(**self.to_device(inputs, model))
            results = model.processor.post_process_object_detection(outputs, threshold=threshold)
            id2label = model.model.config.id2label
            names = lambda ids: [id2label.get(i, str(i)) for i in ids.tolist()]  # noqa: E731
        return [{"scores": r["scores"].float(), "labels": names(r["labels"]), "boxes": r["boxes"].float()}
                for r in results]

    def annotate(self, images: list[DecodedImage], model: LoadedModel) -> list[list[DetectedObject]]:
        return [self._objects(image, found) for image, found in zip(images, self._detections(images, model))]

    def _objects(self, image: DecodedImage, found: dict) -> list[DetectedObject]:
        width, height = image_size(image)
        side = max(width, height)
        # relative-to-padded-square -> relative-to-image
        scale = torch.tensor([side / width, side / height] * 2) if self.config.kind in PADS_TO_SQUARE else torch.ones(4)
        order = torch.argsort(found["scores"], descending=True)[: self.config.max_objects]
        return [
            DetectedObject(label=found["labels"][i], score=min(1.0, max(0.0, float(found["scores"][i]))),
                           box=clamp_box(*(found["boxes"][i] * scale).tolist()), model=self.model_name)
            for i in order.tolist()
        ]
