import importlib.util

import pytest

from llavaforge.models.llm.backends import make_llm_handler
from llavaforge.config.synthesize import SamplingConfig, VllmBackendConfig
from llavaforge.models.llm.vllm_backend import VllmLlmHandler, vllm_llm_kwargs, vllm_sampling_kwargs
from llavaforge.config.recipe import load_recipe

HAS_VLLM = importlib.util.find_spec("vllm") is not None


def test_hub_recipe_validates_and_picks_the_vllm_handler():
    recipe = load_recipe(None, {"preset": "hub", "synthesize.vllm.max_model_len": 4096})
    config = recipe.synthesize
    handler = make_llm_handler(config, seed=3)
    assert isinstance(handler, VllmLlmHandler)
    assert handler.batch_elements_kwargs()["max_batch_size"] == config.max_batch_size


def test_llm_kwargs_turn_on_prefix_caching():
    kwargs = vllm_llm_kwargs("Qwen/Qwen2.5-7B-Instruct", VllmBackendConfig(max_model_len=4096), seed=3)
    assert kwargs == {"model": "Qwen/Qwen2.5-7B-Instruct", "tensor_parallel_size": 1,
                      "gpu_memory_utilization": 0.9, "dtype": "auto", "enable_prefix_caching": True,
                      "trust_remote_code": False, "seed": 3, "max_model_len": 4096}


def test_sampling_kwargs_greedy_and_seeded():
    assert vllm_sampling_kwargs(64, SamplingConfig(), seed=5) == {
        "max_tokens": 64, "temperature": 0.0, "repetition_penalty": 1.0}
    sampled = vllm_sampling_kwargs(64, SamplingConfig(temperature=0.7, top_p=0.9), seed=5)
    assert sampled["seed"] == 5 and sampled["top_p"] == 0.9 and sampled["temperature"] == 0.7


@pytest.mark.skipif(not HAS_VLLM, reason="vLLM is not installed (CPU-only machine; it is the `vllm` extra)")
def test_vllm_accepts_the_sampling_arguments():
    from vllm import SamplingParams

    handler = VllmLlmHandler("m", VllmBackendConfig(), 32, SamplingConfig(temperature=0.5), seed=1)
    from llavaforge.models.llm.base import LlmRequest

    (params,) = handler.sampling_params([LlmRequest(messages=({"role": "user", "content": "hi"},), seed=9)])
    assert isinstance(params, SamplingParams) and params.max_tokens == 32 and params.seed == 9
    import inspect
    import vllm

    accepted = inspect.signature(vllm.LLM.__init__).parameters
    has_kwargs = any(p.kind is p.VAR_KEYWORD for p in accepted.values())
    assert has_kwargs or set(vllm_llm_kwargs("m", VllmBackendConfig(), 0)) <= set(accepted)


@pytest.mark.skipif(HAS_VLLM, reason="checks the message given when vLLM is absent")
def test_loading_without_vllm_says_which_extra_to_install():
    handler = VllmLlmHandler("m", VllmBackendConfig(), 32, SamplingConfig())
    with pytest.raises(ImportError, match=r"llavaforge\[vllm\]"):
        handler.load_model()
