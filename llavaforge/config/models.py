"""What every model a role loads is configured with: where it comes from, where it runs, how it
batches. The vision roles of `annotate` and the vision-language model roles (`config/vlm.py`)
extend it."""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import Field, model_validator

from llavaforge.config.base import BatchBounds

Device = Literal["cpu", "cuda"]
DType = Literal["fp32", "bf16", "fp16"]


class ModelConfig(BatchBounds):
    """What every role's model takes: where it comes from, where it runs, how it batches."""

    enabled: bool = Field(default=True, description="Run this role (false turns off a role a preset names).")
    model: Optional[str] = Field(
        default=None,
        description="Model id on the Hugging Face Hub, a local/mirrored path, or a preset name "
                    "(`llavaforge-tiny/...`, `efficientnet-lite0`, `rapidocr`); loaded with from_pretrained.")
    name: Optional[str] = Field(
        default=None, description="Model name recorded with each annotation (default: `model`).")
    device: Device = Field(default="cpu", description="Where the model runs: cpu or cuda.")
    dtype: Optional[DType] = Field(
        default=None, description="Weights and activations: fp32, bf16 or fp16 (default bf16 on cuda, fp32 on cpu).")
    trust_remote_code: bool = Field(
        default=False, description="Run code shipped with the model (off: only transformers' own classes load).")

    @model_validator(mode="after")
    def _fp16_needs_cuda(self):
        if self.device == "cpu" and self.dtype == "fp16":
            raise ValueError("dtype fp16 needs device cuda (use fp32 or bf16 on cpu)")
        return self

    @property
    def effective_dtype(self) -> DType:
        return self.dtype or ("bf16" if self.device == "cuda" else "fp32")

    @property
    def display_name(self) -> str:
        return self.name or self.model or ""

    @property
    def on_gpu(self) -> bool:
        """Whether this process loads the model on a GPU (its stage then carries the GPU hints)."""
        return self.device == "cuda"
