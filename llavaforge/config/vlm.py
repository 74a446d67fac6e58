"""A vision-language model (VLM): any Hugging Face image-text-to-text chat model, in three roles.

- `annotate.dense_captioner`: a detailed description of every image, kept as a caption the LLM
  stage reads (`DenseCaptionerConfig`);
- `synthesize.vlm`: the model that writes the conversations of tasks in `vlm` mode, with the
  image in its prompt (`synthesize.task_modes`);
- `verify`: a stage that shows the VLM each image with the answers written about it and turns
  its verdicts into rejects or flags (`config/verify.py`).

Each role has its own section, so each may use another model; roles whose model settings are
equal (`engine_key`) share one loaded model per process, and with it its cache of image
encodings: an image is encoded once for all of them.
"""

from __future__ import annotations

import json
from typing import Literal, Optional

from pydantic import Field, model_validator

from llavaforge.config.base import StrictModel
from llavaforge.config.generation import (OpenAiBackendConfig, SamplingConfig, require_static_loop_for_compile,
                                          static_loop_switches)
from llavaforge.config.models import Device, ModelConfig

VlmBackend = Literal["hf", "vllm", "openai"]


class VlmHfConfig(StrictModel):
    image_cache_mb: int = Field(
        default=1024, ge=0,
        description="Image encodings (the vision tower's output) kept per loaded model, in MB: the roles one "
                    "model serves, and the tasks of one image, encode it once. 0 = off. Reused by the static loop, "
                    "or by `generate` where the model's forward takes precomputed encodings (`mm_encoder_outputs`).")
    static_decode: Optional[bool] = Field(
        default=None,
        description="Decode with llavaforge's own loop over a preallocated KV cache, prefilled from the prompt "
                    "embeddings (image encodings in place), instead of `generate`; for the architectures it is "
                    "checked on (SmolVLM/Idefics3, Qwen2-VL, Qwen2.5-VL), others use generate. None = on with cuda.")
    compile: Optional[bool] = Field(
        default=None,
        description="torch.compile the one-token decoding step with CUDA graphs (needs static_decode; the first "
                    "batch of each shape compiles). None = on with static_decode on cuda.")

    @model_validator(mode="after")
    def _compile_needs_static_decode(self) -> "VlmHfConfig":
        require_static_loop_for_compile(self.static_decode, self.compile, "static_decode", "static_decode")
        return self

    def decoding(self, on_gpu: bool) -> tuple[bool, bool]:
        """(static decode, compile) for a model on the GPU or not."""
        return static_loop_switches(self.static_decode, self.compile, on_gpu)


class VlmVllmConfig(StrictModel):
    tensor_parallel_size: int = Field(default=1, ge=1, description="GPUs one model is split over.")
    gpu_memory_utilization: float = Field(
        default=0.9, gt=0.0, le=1.0,
        description="Fraction of GPU memory this vLLM engine may take; lower it when a second engine (the "
                    "LLM, or a VLM of another role) runs in the same worker.")
    max_model_len: Optional[int] = Field(
        default=None, ge=1, description="Longest prompt (image tokens included) + output in tokens (None: the model's).")
    enable_prefix_caching: bool = Field(
        default=True, description="Reuse the KV cache of the shared instruction (the system message) across requests.")


class VlmConfig(ModelConfig):
    """The model, where it runs, and how it generates. `device` applies to the hf backend, `dtype`
    to hf and vllm."""

    model: Optional[str] = Field(
        default=None,
        description="Model id on the Hugging Face Hub, a local path or `llavaforge-tiny/smolvlm` (hf: loaded with "
                    "AutoModelForImageTextToText / AutoProcessor.from_pretrained, safetensors only); for openai the "
                    "served model name.")
    name: Optional[str] = Field(
        default=None, description="Model name recorded with each dense caption (default: `model`).")
    device: Device = Field(
        default="cpu",
        description="Where the hf backend runs the model: cpu or cuda (vllm always uses the GPU; an endpoint decides "
                    "for itself).")
    kind: Literal["vlm"] = Field(
        default="vlm", description="Model family: vlm (any image-text-to-text chat model with a chat template).")
    backend: VlmBackend = Field(
        default="hf",
        description="hf = local transformers (AutoModelForImageTextToText, batched); vllm = offline vLLM with "
                    "multi-modal inputs; openai = an OpenAI-compatible endpoint (images sent as data URLs).")
    max_image_side: int = Field(
        default=768, ge=28, le=8192,
        description="Longest image side sent to the model, in pixels; larger images are downscaled first. Image "
                    "tokens grow with the pixel count (Qwen2-VL: one per 28x28 pixels): this bounds the main cost.")
    max_new_tokens: int = Field(default=512, ge=1, le=8192, description="Most tokens generated per request.")
    sampling: SamplingConfig = Field(default_factory=SamplingConfig,
                                     description="Decoding: greedy at temperature 0 (the default), else sampling.")
    hf: VlmHfConfig = Field(default_factory=VlmHfConfig, description="Options of the hf backend.")
    vllm: VlmVllmConfig = Field(default_factory=VlmVllmConfig, description="Options of the vllm backend.")
    openai: OpenAiBackendConfig = Field(default_factory=OpenAiBackendConfig,
                                        description="Options of the openai backend (endpoint, key, retries).")

    @property
    def on_gpu(self) -> bool:
        return self.backend == "vllm" or (self.backend == "hf" and self.device == "cuda")

    def engine_key(self) -> str:
        """What makes two roles share one loaded model: everything but what a request carries
        (prompt, max_new_tokens, sampling) and the batch bounds."""
        backend = {"hf": self.hf, "vllm": self.vllm, "openai": self.openai}[self.backend]
        return json.dumps([self.backend, self.model, self.device, self.effective_dtype, self.trust_remote_code,
                           self.max_image_side, backend.model_dump(mode="json")], sort_keys=True)


def require_model_when_enabled(config: VlmConfig) -> VlmConfig:
    if config.enabled and not config.model:
        raise ValueError("`model` is required when the role is enabled (set it, or use a preset that names one)")
    return config


class DenseCaptionerConfig(VlmConfig):
    """`annotate.dense_captioner`: one detailed description per image, stored as a caption."""

    max_new_tokens: int = Field(default=256, ge=1, le=8192, description="Longest description, in tokens.")
    prompt_file: Optional[str] = Field(
        default=None,
        description="YAML prompt file (kind dense_caption) replacing the packaged one "
                    "(llavaforge/prompts/vision/dense_caption.yaml); its content is part of the recipe hash.")

    _model_when_enabled = model_validator(mode="after")(require_model_when_enabled)
