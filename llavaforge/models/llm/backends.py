"""The LLM handler a `synthesize` section asks for."""

from __future__ import annotations

from llavaforge.models.llm.base import LlmHandler
from llavaforge.config.synthesize import SynthesizeConfig


def make_llm_handler(config: SynthesizeConfig, seed: int = 0) -> LlmHandler:
    if not config.model:
        raise ValueError("recipe field `synthesize.model` is not set")
    batching = dict(min_batch_size=config.min_batch_size, max_batch_size=config.max_batch_size)
    if config.backend == "hf":
        from llavaforge.models.llm.hf import HfLlmHandler

        return HfLlmHandler(config.model, config.hf, config.max_new_tokens, config.sampling, **batching)
    if config.backend == "vllm":
        from llavaforge.models.llm.vllm_backend import VllmLlmHandler

        return VllmLlmHandler(config.model, config.vllm, config.max_new_tokens, config.sampling, seed=seed, **batching)
    from llavaforge.models.llm.openai_backend import OpenAiLlmHandler

    return OpenAiLlmHandler(config.model, config.openai, config.max_new_tokens, config.sampling, **batching)
