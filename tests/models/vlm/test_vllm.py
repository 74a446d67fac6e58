"""The vllm backend of the VLM roles: the engine arguments and the multi-modal chat messages it
builds (checked without vLLM, which needs a GPU), and the results it reads back."""

from __future__ import annotations

import base64
import importlib.util
import sys
import types

import pytest

from llavaforge.config.recipe import load_recipe
from llavaforge.config.vlm import VlmConfig
from llavaforge.models.vlm.base import GenerationSettings, VlmRequest
from llavaforge.models.vlm.vllm_backend import VllmVlmEngine, vllm_vlm_kwargs, vllm_vlm_messages
from llavaforge.schemas.record import ImageInfo
from tests.conftest import image_bytes

HAS_VLLM = importlib.util.find_spec("vllm") is not None


def test_engine_arguments_allow_one_image_and_turn_on_prefix_caching():
    config = VlmConfig(model="Qwen/Qwen2-VL-7B-Instruct", backend="vllm", dtype="bf16", device="cuda",
                       vllm={"gpu_memory_utilization": 0.4, "max_model_len": 8192})
    assert vllm_vlm_kwargs(config, "/models/qwen2-vl") == {
        "model": "/models/qwen2-vl", "tensor_parallel_size": 1, "gpu_memory_utilization": 0.4, "dtype": "bfloat16",
        "enable_prefix_caching": True, "trust_remote_code": False, "limit_mm_per_prompt": {"image": 1}, "seed": 0,
        "max_model_len": 8192}
    assert vllm_vlm_kwargs(VlmConfig(model="m", backend="vllm"), "m")["dtype"] == "auto"


def test_hub_vlm_on_vllm_is_a_gpu_stage():
    recipe = load_recipe(None, {"preset": "hub", "verify.enabled": True, "verify.backend": "vllm"})
    assert recipe.verify.on_gpu and recipe.verify.model == "HuggingFaceTB/SmolVLM-Instruct"


def test_messages_put_the_image_first_as_a_data_url():
    data = image_bytes(32, 16)
    request = VlmRequest(messages=({"role": "system", "content": "Judge."}, {"role": "user", "content": "1. ..."}),
                         image=ImageInfo(data, "jpg", 32, 16, "", ""))
    system, user = vllm_vlm_messages(request, max_image_side=64)
    assert system == {"role": "system", "content": "Judge."}
    image, text = user["content"]
    assert text == {"type": "text", "text": "1. ..."}
    assert image["image_url"]["url"] == "data:image/jpeg;base64," + base64.b64encode(data).decode()


class FakeLlm:
    """Records what the engine hands vLLM's `LLM.chat` and answers like it."""

    def __init__(self) -> None:
        self.calls = []

    def chat(self, conversations, sampling_params, use_tqdm):
        self.calls.append((conversations, sampling_params, use_tqdm))
        output = types.SimpleNamespace(text="a dog", token_ids=[1, 2, 3])
        return [types.SimpleNamespace(prompt_token_ids=list(range(40)), outputs=[output]) for _ in conversations]


def test_generate_sends_one_conversation_per_request_with_its_sampling(monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", types.SimpleNamespace(SamplingParams=dict))
    llm = FakeLlm()
    engine = VllmVlmEngine(llm, max_image_side=64)
    image = ImageInfo(image_bytes(16, 16), "jpg", 16, 16, "", "")
    requests = [VlmRequest(messages=({"role": "user", "content": f"q{i}"},), image=image, seed=i) for i in range(3)]
    sampling = VlmConfig(sampling={"temperature": 0.7, "top_p": 0.9}).sampling
    generations = engine.run(requests, GenerationSettings(24, sampling))
    assert [(g.text, g.tokens_in, g.tokens_out) for g in generations] == [("a dog", 40, 3)] * 3
    ((conversations, params, use_tqdm),) = llm.calls
    assert len(conversations) == 3 and use_tqdm is False
    assert [p["seed"] for p in params] == [0, 1, 2] and {p["max_tokens"] for p in params} == {24}


@pytest.mark.skipif(not HAS_VLLM, reason="vLLM is not installed (CPU-only machine; it is the `vllm` extra)")
def test_vllm_accepts_the_engine_arguments_names():
    import inspect

    import vllm

    accepted = set(inspect.signature(vllm.EngineArgs).parameters)
    assert set(vllm_vlm_kwargs(VlmConfig(model="m", backend="vllm"), "m")) <= accepted
