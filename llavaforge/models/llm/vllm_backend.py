"""`vllm` backend: offline `vllm.LLM` on a GPU worker, with prefix caching.

vLLM is an optional extra (`pip install llavaforge[vllm]`) and is imported only when the
model loads. The arguments it receives are built by the two pure functions below, which
tests check whether or not vLLM is installed.
"""

from __future__ import annotations

from typing import Any, Sequence

from llavaforge.models.llm.base import Generation, LlmHandler, LlmRequest
from llavaforge.config.synthesize import SamplingConfig, VllmBackendConfig
from llavaforge.models.llm.local_models import resolve_model


def vllm_llm_kwargs(model_name: str, config: VllmBackendConfig, seed: int) -> dict[str, Any]:
    """Keyword arguments of `vllm.LLM(...)`."""
    kwargs: dict[str, Any] = {
        "model": resolve_model(model_name),
        "tensor_parallel_size": config.tensor_parallel_size,
        "gpu_memory_utilization": config.gpu_memory_utilization,
        "dtype": config.dtype,
        "enable_prefix_caching": config.enable_prefix_caching,
        "trust_remote_code": config.trust_remote_code,
        "seed": seed,
    }
    if config.max_model_len is not None:
        kwargs["max_model_len"] = config.max_model_len
    return kwargs


def vllm_sampling_kwargs(max_new_tokens: int, sampling: SamplingConfig, seed: int) -> dict[str, Any]:
    """Keyword arguments of one request's `vllm.SamplingParams(...)`; greedy is temperature 0."""
    kwargs: dict[str, Any] = {
        "max_tokens": max_new_tokens,
        "temperature": sampling.temperature,
        "repetition_penalty": sampling.repetition_penalty,
    }
    if sampling.temperature > 0:
        kwargs.update(top_p=sampling.top_p, seed=seed)
    return kwargs


class VllmLlmHandler(LlmHandler[Any]):
    backend = "vllm"

    def load(self):
        try:
            import vllm
        except ImportError as e:
            raise ImportError("backend `vllm` needs vLLM on the worker: pip install 'llavaforge[vllm]'") from e
        return vllm.LLM(**vllm_llm_kwargs(self.model_name, self.config, self.seed))

    def sampling_params(self, requests: Sequence[LlmRequest]) -> list[Any]:
        from vllm import SamplingParams

        return [SamplingParams(**vllm_sampling_kwargs(self.max_new_tokens, self.sampling, r.seed)) for r in requests]

    def generate(self, model, requests: Sequence[LlmRequest]) -> list[Generation]:
        outputs = model.chat([list(r.messages) for r in requests], sampling_params=self.sampling_params(requests),
                             use_tqdm=False)
        return [Generation(text=o.outputs[0].text, tokens_in=len(o.prompt_token_ids or []),
                           tokens_out=len(o.outputs[0].token_ids)) for o in outputs]
