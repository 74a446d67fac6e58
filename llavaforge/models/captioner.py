"""Captioner role: Hugging Face image-to-text models (BLIP, GIT, VisionEncoderDecoder, Florence-2).

With `compile_vision`, the image encoder runs through `torch.compile` (static shapes): its
eager attention (matmul, softmax, matmul) is rewritten by inductor's attention pattern
matcher into fused scaled-dot-product attention, the part of captioning that grows with
image size. Compilation happens on the first batch of each batch size, once per process.
"""

from __future__ import annotations

import logging
from typing import Optional

import torch
import transformers as tf

from llavaforge.models.caption_decode import BlipGreedyDecoder, supports_greedy_decoder
from llavaforge.config.annotate import CaptionerConfig
from llavaforge.models.fused_attention import fuse_blip_vision_attention
from llavaforge.models.handler import DecodedImage, VisionModelHandler, processor_image_kwargs
from llavaforge.models.loading import LoadedModel, hf_loaded
from llavaforge.schemas.record import Caption

# kind -> names in `transformers` of (model class, processor class, separate tokenizer class or
# None); looked up when a model loads: touching them imports transformers' model and processing
# code (seconds), which a process that only builds the pipeline never needs.
MODEL_CLASSES = {
    "blip": ("AutoModelForImageTextToText", "AutoProcessor", None),
    "git": ("AutoModelForCausalLM", "AutoProcessor", None),
    "vision-encoder-decoder": ("VisionEncoderDecoderModel", "AutoImageProcessor", "AutoTokenizer"),
    "florence2": ("AutoModelForImageTextToText", "AutoProcessor", None),
}
# Attribute names image-to-text models give their image encoder, most specific first:
# BLIP `vision_model` (GIT: `git.image_encoder.vision_model`), Florence-2/LLaVA-likes `vision_tower`,
# Qwen-VL `visual`, VisionEncoderDecoder `encoder`.
VISION_ENCODER_NAMES = ("vision_model", "vision_tower", "image_encoder", "visual", "encoder")

logger = logging.getLogger(__name__)


def vision_encoder(model: torch.nn.Module) -> Optional[torch.nn.Module]:
    """The image encoder of an image-to-text model: the shallowest submodule with the first known name."""
    modules = dict(model.named_modules())
    for name in VISION_ENCODER_NAMES:
        paths = [path for path in modules if path.rsplit(".", 1)[-1] == name]
        if paths:
            return modules[min(paths, key=lambda path: path.count("."))]
    return None


def compile_vision_encoder(model: torch.nn.Module) -> bool:
    """Compile the image encoder in place (compiled lazily on its first call); False when none is found."""
    encoder = vision_encoder(model)
    if encoder is None:
        logger.warning("compile_vision: %s has no image encoder named any of %s; running uncompiled",
                       type(model).__name__, ", ".join(VISION_ENCODER_NAMES))
        return False
    encoder.compile(dynamic=False)
    return True


class CaptionerHandler(VisionModelHandler):
    role = "captioner"
    gpu_decode = True
    config: CaptionerConfig

    def load(self, path: str, config: CaptionerConfig) -> LoadedModel:
        model_class, processor_class, tokenizer_class = (getattr(tf, name) if name else None
                                                         for name in MODEL_CLASSES[config.kind])
        loaded = hf_loaded(model_class, processor_class, path, config, tokenizer_class)
        if config.fused_attention and config.kind == "blip":
            fuse_blip_vision_attention(loaded.model)
        if config.compile_vision:
            compile_vision_encoder(loaded.model)
        return loaded

    def _inputs(self, images: list[DecodedImage], model: LoadedModel) -> dict:
        prompt = self.config.prompt
        on_device = processor_image_kwargs(images)
        if prompt:
            inputs = model.processor(images=images, text=[prompt] * len(images), return_tensors="pt", padding=True,
                                     **on_device)
            inputs.pop("token_type_ids", None)  # generate() of GIT/BLIP rejects them
        else:
            inputs = model.processor(images=images, return_tensors="pt", **on_device)
        return self.to_device(inputs, model)

    def _generate_kwargs(self) -> dict:
        n = self.config.num_captions
        beams = {"num_beams": n, "num_return_sequences": n} if n > 1 else {"num_beams": 1, "do_sample": False}
        return {"max_new_tokens": self.config.max_new_tokens, **beams}

    def _texts(self, generated, inputs: dict, model: LoadedModel) -> list[str]:
        if self.config.kind == "git" and "input_ids" in inputs:
            # GIT returns the prompt ids before the new ones
            generated = generated[:, inputs["input_ids"].shape[1]:]
        texts = model.tokenizer.batch_decode(generated, skip_special_tokens=True)
        prompt = (self.config.prompt or "").strip().lower()
        return [_strip_prompt(t.strip(), prompt) for t in texts]

    def _greedy_decoder(self, model: LoadedModel) -> Optional[BlipGreedyDecoder]:
        """The model's own-loop decoder for this configuration (made once), or None to use generate."""
        if not self.config.uses_static_decode:
            return None
        if not supports_greedy_decoder(model.model):
            raise ValueError(f"static_decode: {type(model.model).__name__} is not a BLIP-style captioner")
        key = ("greedy_decoder", self.config.max_new_tokens, self.config.max_batch_size)
        if key not in model.derived:
            model.derived[key] = BlipGreedyDecoder(model.model, self.config.max_new_tokens,
                                                   compile=model.device.type == "cuda", rows=self.config.max_batch_size)
        return model.derived[key]

    def annotate(self, images: list[DecodedImage], model: LoadedModel) -> list[list[Caption]]:
        inputs = self._inputs(images, model)
        decoder = self._greedy_decoder(model)
        if decoder is not None:
            generated = decoder.caption_ids(inputs["pixel_values"])
        else:
            generated = model.model.generate(**inputs, **self._generate_kwargs())
        texts = self._texts(generated, inputs, model)
        n = self.config.num_captions
        per_image = [texts[i * n:(i + 1) * n] for i in range(len(images))]
        return [_captions(candidates, self.model_name) for candidates in per_image]


def _strip_prompt(text: str, prompt: str) -> str:
    if prompt and text.lower().startswith(prompt):
        return text[len(prompt):].strip()
    return text


def _captions(candidates: list[str], model_name: str) -> list[Caption]:
    """Distinct non-empty captions; an image with none is a failure (a reject, not a crash)."""
    distinct = list(dict.fromkeys(t for t in candidates if t))
    if not distinct:
        raise ValueError("the captioner produced no text")
    return [Caption(text=t, model=model_name) for t in distinct]
