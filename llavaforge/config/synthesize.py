"""Recipe section `synthesize`: which task types the LLM writes, with which backend.

Synthesis is off while `tasks` is empty; a preset (see `config/presets.py`) fills it in, and
every field written in the recipe wins over the preset.
"""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import Field, field_validator, model_validator

from llavaforge.config.base import BatchBounds, StrictModel
# re-exported: the LLM backends import them from here
from llavaforge.config.generation import (OpenAiBackendConfig, SamplingConfig,  # noqa: F401
                                          require_static_loop_for_compile, static_loop_switches)
from llavaforge.config.vlm import VlmConfig

DEFAULT_TASK_WEIGHTS = {"conversation": 58.0, "detail": 23.0, "reasoning": 77.0}


class HfBackendConfig(StrictModel):
    device: Literal["auto", "cpu", "cuda"] = Field(
        default="auto", description="Where the model runs; auto = cuda when available, else cpu.")
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = Field(
        default="auto", description="Weights dtype; auto = bfloat16 on GPU, float32 on CPU.")
    prompt_style: Literal["auto", "chat", "completion"] = Field(
        default="auto",
        description="chat = the tokenizer's chat template; completion = a plain few-shot text "
                    "template (for base models); auto = chat when the tokenizer has a template.")
    prefix_reuse: bool = Field(
        default=True,
        description="Compute the KV cache of the shared system + few-shot prefix once per task "
                    "and reuse it for every request of a batch.")
    static_cache: Optional[bool] = Field(
        default=None,
        description="Decode with llavaforge's own loop over a preallocated KV cache (fixed shapes, "
                    "prefix reuse kept) instead of `generate`; None = on when the model runs on cuda.")
    compile: Optional[bool] = Field(
        default=None,
        description="torch.compile the one-token decoding step with CUDA graphs (needs the static "
                    "cache; the first batch of each shape compiles); None = on with the static cache on cuda.")
    trust_remote_code: bool = Field(
        default=False, description="Allow model code from the model folder/repo (off: only "
                                   "architectures that ship with transformers).")

    @model_validator(mode="after")
    def _compile_needs_static_cache(self) -> "HfBackendConfig":
        require_static_loop_for_compile(self.static_cache, self.compile, "static_cache",
                                        "the static cache (fixed shapes)")
        return self

    def decoding(self, on_gpu: bool) -> tuple[bool, bool]:
        """(static cache, compile) for a model on the GPU or not."""
        return static_loop_switches(self.static_cache, self.compile, on_gpu)


class VllmBackendConfig(StrictModel):
    tensor_parallel_size: int = Field(default=1, ge=1, description="GPUs one model is split over.")
    gpu_memory_utilization: float = Field(
        default=0.9, gt=0.0, le=1.0, description="Fraction of GPU memory vLLM may take.")
    max_model_len: Optional[int] = Field(
        default=None, ge=1, description="Longest prompt + output in tokens (None: the model's).")
    dtype: str = Field(default="auto", description="vLLM dtype: auto, bfloat16, float16.")
    enable_prefix_caching: bool = Field(
        default=True, description="Reuse the KV cache of the shared system + few-shot prefix.")
    trust_remote_code: bool = Field(default=False, description="Allow model code from the repo.")


class SynthesizeConfig(BatchBounds):
    """Synthesis is off unless the recipe or a preset turns it on."""

    tasks: list[str] = Field(
        default_factory=list,
        description="Task types to generate (a prompt file each: conversation, detail, reasoning, "
                    "or your own). Empty = synthesis off.")
    task_mix: Literal["all", "weighted"] = Field(
        default="weighted",
        description="all = every task for every image; weighted = `tasks_per_image` tasks drawn "
                    "per image by `task_weights`, decided by the image key and the recipe seed.")
    task_weights: dict[str, float] = Field(
        default_factory=lambda: dict(DEFAULT_TASK_WEIGHTS),
        description="Relative weight of each task in the weighted draw (LLaVA-Instruct: 58:23:77); "
                    "a task without a weight gets 1.")
    tasks_per_image: int = Field(
        default=1, ge=1, description="Distinct tasks drawn per image in the weighted mix.")
    prompts_dir: Optional[str] = Field(
        default=None,
        description="Folder of prompt files (one YAML per task type); None = the packaged library.")
    few_shot_examples: Optional[int] = Field(
        default=None, ge=0,
        description="Few-shot examples sent per task (the first N of each file); None = all.")
    backend: Literal["hf", "vllm", "openai"] = Field(
        default="hf", description="hf = local transformers; vllm = offline vLLM; openai = any "
                                  "OpenAI-compatible chat endpoint.")
    model: Optional[str] = Field(
        default=None,
        description="Model id, local path, a built-in name (tiny/..., offline/...) or, for openai, "
                    "the served model name.")
    max_new_tokens: int = Field(default=512, ge=1, description="Most tokens generated per request.")
    sampling: SamplingConfig = Field(default_factory=SamplingConfig)
    context_max_tokens: int = Field(
        default=1024, ge=16,
        description="Budget for an image's description (approximate tokens); OCR, source text, "
                    "tags, objects and captions are dropped in that order, lowest score first.")
    max_raw_chars: int = Field(
        default=500, ge=0, description="Characters of unparseable model output kept in a reject's detail.")
    hf: HfBackendConfig = Field(default_factory=HfBackendConfig)
    vllm: VllmBackendConfig = Field(default_factory=VllmBackendConfig)
    openai: OpenAiBackendConfig = Field(default_factory=OpenAiBackendConfig)
    task_modes: dict[str, Literal["llm", "vlm"]] = Field(
        default_factory=dict,
        description="Per task type: llm = the LLM writes from the image's annotations without seeing it (LLaVA's "
                    "method, the default); vlm = the vision-language model `vlm` writes with the image in its "
                    "prompt (the task's prompt file needs a `vision` block).")
    vlm: Optional[VlmConfig] = Field(
        default=None,
        description="The vision-language model of tasks in vlm mode; `vlm.enabled: false` sends them back to the LLM.")

    @field_validator("tasks")
    @classmethod
    def _distinct_names(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError("task types must be distinct")
        for name in v:
            if not name or not name.replace("_", "").replace("-", "").isalnum():
                raise ValueError(f"task type {name!r} must be letters, digits, - or _")
        return v

    @field_validator("task_weights")
    @classmethod
    def _non_negative(cls, v: dict[str, float]) -> dict[str, float]:
        if any(w < 0 for w in v.values()):
            raise ValueError("weights must be >= 0")
        return v

    @model_validator(mode="after")
    def _model_when_on(self) -> "SynthesizeConfig":
        if self.llm_tasks and not self.model:
            raise ValueError("synthesize.model is required when synthesize.tasks is set without a preset")
        seeing = [t for t in self.tasks if self.task_modes.get(t) == "vlm"]
        if seeing and (self.vlm is None or (self.vlm.enabled and not self.vlm.model)):
            raise ValueError(f"synthesize.vlm.model is required: task_modes puts {', '.join(seeing)} in vlm mode")
        return self

    @property
    def enabled(self) -> bool:
        return bool(self.tasks)

    @property
    def vision_tasks(self) -> list[str]:
        """Tasks the VLM writes, seeing the image (vlm mode, with the VLM enabled)."""
        on = self.vlm is not None and self.vlm.enabled
        return [t for t in self.tasks if on and self.task_modes.get(t) == "vlm"]

    @property
    def llm_tasks(self) -> list[str]:
        return [t for t in self.tasks if t not in self.vision_tasks]

    @property
    def on_gpu(self) -> bool:
        """Whether this process loads a model of the stage on a GPU (the LLM on vLLM or on hf with
        cuda, or the VLM of vlm-mode tasks); an OpenAI-compatible endpoint, or hf on
        `auto`/`cpu`, needs no GPU worker."""
        llm = self.backend == "vllm" or (self.backend == "hf" and self.hf.device == "cuda")
        return (bool(self.llm_tasks) and llm) or (bool(self.vision_tasks) and self.vlm.on_gpu)
