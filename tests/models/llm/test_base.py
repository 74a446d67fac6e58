"""What every LLM handler shares: one loaded model per configuration and process, and one
batch at a time on a model that is not safe to call from several threads."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

from llavaforge.config.synthesize import HfBackendConfig, SamplingConfig
from llavaforge.models.llm.base import Generation, LlmHandler, LlmRequest


class _Probe(LlmHandler):
    backend = "probe"
    loads = 0

    def load(self):
        type(self).loads += 1
        return {"busy": 0, "overlapped": False, "lock": threading.Lock()}

    def generate(self, model, requests):
        with model["lock"]:
            model["busy"] += 1
            model["overlapped"] |= model["busy"] > 1
        time.sleep(0.02)
        with model["lock"]:
            model["busy"] -= 1
        return [Generation("x", 1, 1) for _ in requests]


def handler(**changes) -> _Probe:
    return _Probe(changes.get("model", "m"), HfBackendConfig(), 8, SamplingConfig())


def test_one_model_per_configuration_and_never_two_batches_at_once():
    first, second = handler(), handler()
    model = first.load_model()
    assert second.load_model() is model and _Probe.loads == 1  # the retry path shares RunInference's copy
    assert handler(model="other").load_model() is not model
    batch = [LlmRequest(messages=({"role": "user", "content": "q"},))] * 2
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda _: first.run_inference(batch, model), range(16)))
    assert not model["overlapped"]
