"""One interface for every LLM backend: chat messages in, text and token counts out.

Each backend is a Beam `ModelHandler[LlmRequest, PredictionResult, ...]`, so RunInference
does the batching (bounded by the recipe), model sharing across threads and metrics.
A request the backend gives up on comes back with `error` set instead of raising, so one
failing request becomes one reject and never fails a bundle; a batch the backend raises on
is retried request by request by the stage.

A loaded model is shared by everything in a process that asks for the same configuration
(RunInference's threads and the stage's request-by-request retry), and a backend whose model
is not safe to call from several threads at once (`thread_safe = False`: hf, vLLM) runs one
batch at a time.
"""

from __future__ import annotations

import json
import threading
from typing import Any, Generic, Iterable, NamedTuple, Optional, Sequence, TypeVar

from apache_beam.ml.inference.base import ModelHandler, PredictionResult

ModelT = TypeVar("ModelT")
_models: dict[str, Any] = {}
_locks: dict[int, threading.Lock] = {}
_loading = threading.Lock()
Message = dict[str, str]  # {"role": "system" | "user" | "assistant", "content": str}


class LlmRequest(NamedTuple):
    messages: tuple[Message, ...]
    seed: int = 0  # sampling seed (ignored when decoding greedily)
    shared_prefix: int = 0  # leading messages shared by many requests (system + few-shot): reusable
    tag: Any = None  # caller data carried through to the result untouched


class Generation(NamedTuple):
    text: str
    tokens_in: int
    tokens_out: int
    error: str = ""  # why the backend gave up on this request; `text` is empty then


def prompt_chars(request: LlmRequest) -> int:
    return sum(len(m["content"]) for m in request.messages)


class LlmHandler(ModelHandler[LlmRequest, PredictionResult, ModelT], Generic[ModelT]):
    """Subclasses load a model and implement `generate`; results keep the batch order."""

    backend = "llm"
    thread_safe = False

    def __init__(self, model_name: str, config: Any, max_new_tokens: int, sampling: Any, seed: int = 0,
                 min_batch_size: int = 1, max_batch_size: int = 16) -> None:
        """`config`: the backend's recipe section (hf, vllm or openai); `sampling`: SamplingConfig."""
        super().__init__(min_batch_size=min_batch_size, max_batch_size=max_batch_size)
        self.model_name = model_name
        self.config = config
        self.max_new_tokens = max_new_tokens
        self.sampling = sampling
        self.seed = seed
        self.max_batch_size = max_batch_size

    def load(self) -> ModelT:
        raise NotImplementedError

    def generate(self, model: ModelT, requests: Sequence[LlmRequest]) -> list[Generation]:
        raise NotImplementedError

    def identity(self) -> str:
        """What makes two handlers share one loaded model."""
        def plain(value: Any) -> Any:
            return value.model_dump(mode="json") if hasattr(value, "model_dump") else value
        return json.dumps([type(self).__name__, self.model_name, plain(self.config), self.max_new_tokens,
                           plain(self.sampling), self.seed, self.max_batch_size], sort_keys=True, default=str)

    def load_model(self) -> ModelT:
        """The process-wide copy of this configuration's model, loaded on first use."""
        if self.thread_safe:
            return self.load()  # cheap and stateless enough to have one per caller
        key = self.identity()
        with _loading:
            if key not in _models:
                model = self.load()
                _models[key] = model
                _locks[id(model)] = threading.Lock()
            return _models[key]

    def run_inference(self, batch: Sequence[LlmRequest], model: ModelT,
                      inference_args: Optional[dict[str, Any]] = None) -> Iterable[PredictionResult]:
        if self.thread_safe:
            generations = self.generate(model, batch)
        else:
            with _locks.setdefault(id(model), threading.Lock()):
                generations = self.generate(model, batch)
        if len(generations) != len(batch):
            raise RuntimeError(f"{self.backend} backend returned {len(generations)} results for {len(batch)} requests")
        return [PredictionResult(example=r, inference=g, model_id=self.model_name) for r, g in zip(batch, generations)]

    def get_metrics_namespace(self) -> str:
        return f"llavaforge_llm_{self.backend}"
