"""`hf` backend: a local transformers image-text-to-text model, batched.

A batch is rendered with the processor's chat template (the image first in the last user
message), processed in one call (left padding) and generated in one `generate` call. Images
are decoded on the GPU when the model is on cuda, every image is a JPEG and the processor
runs on torch tensors (the same path as the vision roles, `models/handler.py`); any failure
there reruns the batch through Pillow.

Image encodings are cached: the vision tower's output for an image is kept (LRU, within
`hf.image_cache_mb`) and reused the next time that image comes, so a model serving the dense
captioner, the synthesizer and the verifier encodes each image once. Encodings reach the model
through the static loop below (it builds the prompt embeddings itself), or through `generate`'s
`mm_encoder_outputs` where the model's forward takes them (transformers >= 5.2x); a model
whose encoder output cannot be split per image runs uncached through `generate`.

With `hf.static_decode` (default on cuda) a batch is decoded by `static_decode.VlmStaticDecoder`:
prompt embeddings with the encodings in place prefill a static KV cache, then the LLM's
one-token step (compiled with CUDA graphs with `hf.compile`) decodes.
"""

from __future__ import annotations

import hashlib
import inspect
import logging
from collections import OrderedDict
from typing import Any, Optional, Sequence

import torch
from apache_beam.metrics import Metrics

from llavaforge.config.vlm import VlmConfig
from llavaforge.models.handler import (DecodedImage, decode_images, decode_images_on, is_jpeg_image,
                                       is_torchvision_backed, processor_image_kwargs, torchvision_jpeg_decoder)
from llavaforge.models.llm.base import Generation
from llavaforge.models.llm.static_decode import TokenPicker
from llavaforge.models.loading import TORCH_DTYPES
from llavaforge.models.vlm.base import GenerationSettings, VlmEngine, VlmRequest, chat_messages
from llavaforge.models.vlm.images import fit_pil, fit_tensor
from llavaforge.models.vlm.static_decode import (VlmStaticDecoder, prompt_embeddings, prompt_positions,
                                                 static_decode_refusal)
from llavaforge.schemas.record import ImageInfo

log = logging.getLogger(__name__)
IMAGE_PART = {"type": "image"}
PIXEL_PREFIX = "pixel_"  # the raw image inputs a model's encoder reads (pixel_values, pixel_attention_mask)
REUSED, COMPUTED = "image_encodings_reused", "image_encodings_computed"  # Beam counters, per role


def image_key(image: ImageInfo) -> str:
    return image.sha256 or hashlib.sha256(image.data).hexdigest()


def tensor_bytes(value: torch.Tensor) -> int:
    return value.numel() * value.element_size()


class EncodingCache:
    """One image's encoding per key, least recently used dropped past `max_bytes`."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self.hits = 0
        self.misses = 0
        self._entries: OrderedDict[str, torch.Tensor] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str) -> Optional[torch.Tensor]:
        value = self._entries.get(key)
        if value is None:
            self.misses += 1
            return None
        self.hits += 1
        self._entries.move_to_end(key)
        return value

    def put(self, key: str, value: torch.Tensor) -> None:
        if key in self._entries:
            self.bytes -= tensor_bytes(self._entries.pop(key))
        if tensor_bytes(value) > self.max_bytes:
            return
        self._entries[key] = value
        self.bytes += tensor_bytes(value)
        while self.bytes > self.max_bytes:
            _, dropped = self._entries.popitem(last=False)
            self.bytes -= tensor_bytes(dropped)


def split_per_image(encoded: Any, count: int) -> Optional[tuple[list[torch.Tensor], bool]]:
    """(one tensor per image, whether the model stacks them in one tensor) from an encoder's
    pooled output, or None when it does not hold exactly one entry per image."""
    if isinstance(encoded, torch.Tensor):
        return ([encoded[i] for i in range(count)], True) if encoded.shape[0] == count else None
    if isinstance(encoded, (list, tuple)) and len(encoded) == count and all(isinstance(t, torch.Tensor) for t in encoded):
        return list(encoded), False
    return None


def encodes_images_alone(model: Any) -> bool:
    """Whether the model encodes images apart from its forward (`get_image_features`)."""
    return callable(getattr(model, "get_image_features", None))


def takes_precomputed_encodings(model: Any) -> bool:
    """Whether the model's forward (and so `generate`) takes encodings computed before."""
    return "mm_encoder_outputs" in inspect.signature(model.forward).parameters


class HfVlmEngine(VlmEngine):
    def __init__(self, model: Any, processor: Any, config: VlmConfig) -> None:
        super().__init__()
        self.model = model
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.tokenizer.padding_side = "left"
        self.max_image_side = config.max_image_side
        self.device = model.device
        self.dtype = model.dtype
        eos = model.generation_config.eos_token_id
        eos_ids = eos if isinstance(eos, list) else [eos] if eos is not None else []
        self.eos_ids = set(eos_ids) | ({self.tokenizer.eos_token_id} if self.tokenizer.eos_token_id is not None else set())
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else min(self.eos_ids)
        self._stacked: Optional[bool] = None  # how the model's encoder returns per-image encodings
        self.gpu_decode_fallbacks = 0
        self.takes_encodings = takes_precomputed_encodings(model)
        self.static = self._static_decoder(config)
        # None: nothing can use an encoding computed before (generate then encodes the pixels itself)
        usable = encodes_images_alone(model) and (self.static is not None or self.takes_encodings)
        self.encodings = EncodingCache(config.hf.image_cache_mb * 2**20) if usable else None

    def _static_decoder(self, config: VlmConfig) -> Optional[VlmStaticDecoder]:
        static, compile = config.hf.decoding(on_gpu=self.device.type == "cuda")
        if not static:
            return None
        refusal = static_decode_refusal(self.model) if encodes_images_alone(self.model) else "no get_image_features"
        if refusal:
            log.warning("vlm hf backend: static_decode falls back to generate for this model (%s)", refusal)
            return None
        return VlmStaticDecoder(self.model, self.pad_id, self.eos_ids, compile=compile, rows=config.max_batch_size)

    @classmethod
    def load(cls, config: VlmConfig, path: str, field: str) -> "HfVlmEngine":
        from transformers import AutoModelForImageTextToText, AutoProcessor

        remote = {"trust_remote_code": config.trust_remote_code}
        model = AutoModelForImageTextToText.from_pretrained(
            path, dtype=TORCH_DTYPES[config.effective_dtype], use_safetensors=True, **remote)
        processor = AutoProcessor.from_pretrained(path, **remote)
        return cls(model.to(torch.device(config.device)).eval(), processor, config)

    # -- images ------------------------------------------------------------------------------

    def _decodes_on_gpu(self, images: Sequence[ImageInfo]) -> bool:
        return (self.device.type == "cuda" and all(is_jpeg_image(i) for i in images)
                and is_torchvision_backed(self.processor) and torchvision_jpeg_decoder() is not None)

    def _count_fallback(self, error: Exception) -> None:
        if not self.gpu_decode_fallbacks:
            log.warning("vlm hf backend: the GPU image path failed (%s: %s); rerunning the batch with Pillow "
                        "(logged once; later fallbacks are only counted)", type(error).__name__, error)
        self.gpu_decode_fallbacks += 1

    # -- encodings ---------------------------------------------------------------------------

    def _encoder_inputs(self, inputs: dict[str, Any]) -> dict[str, Any]:
        params = inspect.signature(self.model.get_image_features).parameters
        return {name: value for name, value in inputs.items() if name in params}

    def encodings_for(self, requests: Sequence[VlmRequest], inputs: dict[str, Any],
                      namespace: str = "vlm") -> Optional[list[torch.Tensor]]:
        """One encoding per image of the batch: from the cache when every image is in it, else
        computed (and cached); None when nothing would use them."""
        if self.encodings is None:
            return None
        keys = [image_key(r.image) for r in requests]
        found = [self.encodings.get(key) for key in keys]
        if all(value is not None for value in found):
            Metrics.counter(namespace, REUSED).inc(len(found))
            return found
        Metrics.counter(namespace, COMPUTED).inc(len(requests))
        encoded = self.model.get_image_features(**self._encoder_inputs(inputs), return_dict=True).pooler_output
        split = split_per_image(encoded, len(requests))
        if split is None:
            log.warning("vlm hf backend: %s's image encodings are not one per image; running uncached through "
                        "generate", type(self.model).__name__)
            self.encodings, self.static = None, None
            return None
        computed, self._stacked = split
        for key, value in zip(keys, computed):
            self.encodings.put(key, value.clone())  # its own storage: a view would keep the whole batch's alive
        return computed

    def encoder_outputs(self, encodings: list[torch.Tensor]) -> Any:
        """Encodings as `generate`'s `mm_encoder_outputs["image"]`, in the layout the model's encoder returns."""
        from transformers.modeling_outputs import BaseModelOutputWithPooling

        return BaseModelOutputWithPooling(pooler_output=torch.stack(encodings) if self._stacked else tuple(encodings))

    # -- generation --------------------------------------------------------------------------

    def _processed(self, requests: Sequence[VlmRequest], images: list[DecodedImage]) -> dict[str, Any]:
        """Processor outputs of the batch on the model's device (floating tensors in its dtype)."""
        texts = [self.processor.apply_chat_template(chat_messages(r, IMAGE_PART, parts_everywhere=True),
                                                    tokenize=False, add_generation_prompt=True) for r in requests]
        inputs = self.processor(text=texts, images=[[image] for image in images], padding=True, return_tensors="pt",
                                **processor_image_kwargs(images))
        return {name: (t.to(self.device, self.dtype) if torch.is_floating_point(t) else t.to(self.device))
                for name, t in inputs.items()}

    def model_inputs(self, requests: Sequence[VlmRequest]) -> dict[str, Any]:
        """The batch processed with its images fitted to `max_image_side`: decoded and resized on
        the GPU when it can (any failure there reruns the batch through Pillow), else with Pillow."""
        images = [r.image for r in requests]
        if self._decodes_on_gpu(images):
            try:
                decoded = [fit_tensor(t, self.max_image_side) for t in decode_images_on(images, self.device)]
                return self._processed(requests, decoded)
            except Exception as e:  # noqa: BLE001 -- any failure on the GPU path: Pillow decides
                self._count_fallback(e)
        return self._processed(requests, [fit_pil(image, self.max_image_side) for image in decode_images(images)])

    def _generation_kwargs(self, settings: GenerationSettings, seed: int) -> dict[str, Any]:
        sampling = settings.sampling
        kwargs: dict[str, Any] = {"max_new_tokens": settings.max_new_tokens, "pad_token_id": self.pad_id,
                                  "eos_token_id": sorted(self.eos_ids)}
        if sampling.temperature > 0:
            torch.manual_seed(seed)  # batch-level: the same batch with the same seeds repeats exactly
            kwargs.update(do_sample=True, temperature=sampling.temperature, top_p=sampling.top_p)
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        if sampling.repetition_penalty != 1.0:
            kwargs["repetition_penalty"] = sampling.repetition_penalty
        return kwargs

    def _text(self, tokens: list[int], tokens_in: int) -> Generation:
        end = next((i + 1 for i, t in enumerate(tokens) if t in self.eos_ids), len(tokens))
        text = self.tokenizer.decode(tokens[:end], skip_special_tokens=True).strip()
        return Generation(text=text, tokens_in=tokens_in, tokens_out=end)

    def _picker(self, inputs: dict[str, Any], settings: GenerationSettings, seed: int) -> Optional[TokenPicker]:
        sampling = settings.sampling
        if sampling.temperature == 0 and sampling.repetition_penalty == 1.0:
            return None  # greedy inside the (compiled) step
        prompt_ids = [row[mask.bool()].tolist() for row, mask in zip(inputs["input_ids"], inputs["attention_mask"])]
        return TokenPicker(prompt_ids, sampling.temperature, sampling.top_p, sampling.repetition_penalty, seed)

    def _decode_static(self, inputs: dict[str, Any], encodings: list[torch.Tensor],
                       settings: GenerationSettings, seed: int) -> list[list[int]]:
        embeds = prompt_embeddings(self.model, inputs["input_ids"], encodings)
        positions, offsets = prompt_positions(self.model, inputs)
        return self.static.decode_embedded(embeds, inputs["attention_mask"], positions, offsets,
                                           settings.max_new_tokens, self._picker(inputs, settings, seed))

    def generate(self, requests: Sequence[VlmRequest], settings: GenerationSettings) -> list[Generation]:
        seed = requests[0].seed
        with torch.inference_mode():
            inputs = self.model_inputs(requests)
            encodings = self.encodings_for(requests, inputs, settings.namespace)
            if encodings is not None and self.static is not None:
                new_tokens = self._decode_static(inputs, encodings, settings, seed)
            else:
                kwargs = dict(inputs)
                if encodings is not None and self.takes_encodings:
                    kwargs = {name: t for name, t in inputs.items() if not name.startswith(PIXEL_PREFIX)}
                    kwargs["mm_encoder_outputs"] = {"image": self.encoder_outputs(encodings)}
                out = self.model.generate(**kwargs, **self._generation_kwargs(settings, seed))
                new_tokens = out[:, inputs["input_ids"].shape[1]:].tolist()
        tokens_in = inputs["attention_mask"].sum(dim=1).tolist()
        return [self._text(row, n) for row, n in zip(new_tokens, tokens_in)]
