"""`vllm` backend for a vision-language model: offline `vllm.LLM` with multi-modal inputs.

Requests go through `LLM.chat` as OpenAI-style messages, the image as a data URL part before
the text of the last user message (vLLM decodes it and runs the model's own processor). The
system message, the role's instruction, comes first, so vLLM's prefix caching reuses its KV
cache across the images of a role. vLLM is an optional extra (`pip install
'llavaforge[vllm]'`), imported only when the model loads; the arguments it gets are built by
the pure functions below, which tests check without vLLM.
"""

from __future__ import annotations

from typing import Any, Sequence

from llavaforge.config.vlm import VlmConfig
from llavaforge.models.llm.base import Generation
from llavaforge.models.llm.vllm_backend import vllm_sampling_kwargs
from llavaforge.models.vlm.base import GenerationSettings, VlmEngine, VlmRequest, chat_messages
from llavaforge.models.vlm.images import data_url
from llavaforge.models.vlm.openai_backend import image_url_part

VLLM_DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


def vllm_vlm_kwargs(config: VlmConfig, path: str) -> dict[str, Any]:
    """Keyword arguments of `vllm.LLM(...)` for a VLM role's model."""
    kwargs: dict[str, Any] = {
        "model": path,
        "tensor_parallel_size": config.vllm.tensor_parallel_size,
        "gpu_memory_utilization": config.vllm.gpu_memory_utilization,
        "dtype": VLLM_DTYPES[config.dtype] if config.dtype else "auto",
        "enable_prefix_caching": config.vllm.enable_prefix_caching,
        "trust_remote_code": config.trust_remote_code,
        "limit_mm_per_prompt": {"image": 1},
        "seed": 0,  # each request carries its own sampling seed
    }
    if config.vllm.max_model_len is not None:
        kwargs["max_model_len"] = config.vllm.max_model_len
    return kwargs


def vllm_vlm_messages(request: VlmRequest, max_image_side: int) -> list[dict[str, Any]]:
    part = image_url_part(data_url(request.image, max_image_side))
    return chat_messages(request, part, parts_everywhere=False)


class VllmVlmEngine(VlmEngine):
    def __init__(self, llm: Any, max_image_side: int) -> None:
        super().__init__()
        self.llm = llm
        self.max_image_side = max_image_side

    @classmethod
    def load(cls, config: VlmConfig, path: str, field: str) -> "VllmVlmEngine":
        try:
            import vllm
        except ImportError as e:
            raise ImportError(f"backend `vllm` of {field} needs vLLM on the worker: pip install 'llavaforge[vllm]'") from e
        return cls(vllm.LLM(**vllm_vlm_kwargs(config, path)), config.max_image_side)

    def generate(self, requests: Sequence[VlmRequest], settings: GenerationSettings) -> list[Generation]:
        from vllm import SamplingParams

        params = [SamplingParams(**vllm_sampling_kwargs(settings.max_new_tokens, settings.sampling, r.seed))
                  for r in requests]
        outputs = self.llm.chat([vllm_vlm_messages(r, self.max_image_side) for r in requests],
                                sampling_params=params, use_tqdm=False)
        return [Generation(text=o.outputs[0].text, tokens_in=len(o.prompt_token_ids or []),
                           tokens_out=len(o.outputs[0].token_ids)) for o in outputs]
