"""One interface for every vision-language model backend: chat messages + one image in, text out.

A `VlmRequest` is text chat messages and the image; every backend puts the image before the
text of the last user message (as an image part: a placeholder for the hf backend's processor,
a data URL for vLLM and OpenAI-compatible endpoints). An engine is one loaded model (or one
endpoint client); `shared_engine` keeps one per process per `VlmConfig.engine_key`, so the
roles that use the same model (dense captioner, synthesizer, verifier) share it, its lock and
its cache of image encodings. What a role asks for per request (prompt, max_new_tokens,
sampling) travels with the call, not with the engine.

`VlmHandler` is the Beam `ModelHandler` of one role over `VlmRequest`s; a batch an engine
raises on fails as a whole, and the stage retries it request by request (one bad image is
one reject). A request an endpoint gives up on comes back with `Generation.error` set.
"""

from __future__ import annotations

import threading
from typing import Any, Callable, Iterable, NamedTuple, Optional, Sequence

from apache_beam.ml.inference.base import ModelHandler, PredictionResult

from llavaforge.config.generation import SamplingConfig
from llavaforge.config.vlm import VlmConfig
from llavaforge.models.llm.base import Generation, Message
from llavaforge.models.loading import ModelLoadError, resolve_model_path
from llavaforge.schemas.record import ImageInfo


class VlmRequest(NamedTuple):
    messages: tuple[Message, ...]  # text only; the image goes before the text of the last user message
    image: ImageInfo
    seed: int = 0  # sampling seed (ignored when decoding greedily)
    tag: Any = None  # caller data carried through to the result untouched


class GenerationSettings(NamedTuple):
    """What a role asks of a shared engine per call."""

    max_new_tokens: int
    sampling: SamplingConfig
    namespace: str = "vlm"  # the role's Beam metrics namespace, where engines count what they reuse


def chat_messages(request: VlmRequest, image_part: dict[str, Any], parts_everywhere: bool) -> list[dict[str, Any]]:
    """The request as chat messages, `image_part` first in the content parts of the last user
    message. `parts_everywhere`: every content a list of parts (what VLM chat templates such as
    SmolVLM's iterate over); else the other messages keep plain text (what any OpenAI-compatible
    server accepts)."""
    last_user = max(i for i, m in enumerate(request.messages) if m["role"] == "user")
    messages: list[dict[str, Any]] = []
    for i, message in enumerate(request.messages):
        text = [{"type": "text", "text": message["content"]}] if message["content"] else []
        if i == last_user:
            content: Any = [image_part, *text]
        else:
            content = text if parts_everywhere else message["content"]
        messages.append({"role": message["role"], "content": content})
    return messages


class VlmEngine:
    """A loaded model (or endpoint client). Subclasses implement `generate`; results keep the
    request order. Engines that are not safe to call from several threads (`thread_safe =
    False`) run one batch at a time."""

    thread_safe = False

    def __init__(self) -> None:
        self._lock = threading.Lock()

    def generate(self, requests: Sequence[VlmRequest], settings: GenerationSettings) -> list[Generation]:
        raise NotImplementedError

    def run(self, requests: Sequence[VlmRequest], settings: GenerationSettings) -> list[Generation]:
        if self.thread_safe:
            generations = self.generate(requests, settings)
        else:
            with self._lock:
                generations = self.generate(requests, settings)
        if len(generations) != len(requests):
            raise RuntimeError(f"{type(self).__name__} returned {len(generations)} results for {len(requests)} requests")
        return generations


EngineLoader = Callable[[VlmConfig, str, str], VlmEngine]  # (config, model path, recipe field) -> engine

_engines: dict[str, VlmEngine] = {}
_loading = threading.Lock()


def _loader(backend: str) -> EngineLoader:
    if backend == "hf":
        from llavaforge.models.vlm.hf import HfVlmEngine

        return HfVlmEngine.load
    if backend == "vllm":
        from llavaforge.models.vlm.vllm_backend import VllmVlmEngine

        return VllmVlmEngine.load
    from llavaforge.models.vlm.openai_backend import OpenAiVlmEngine

    return OpenAiVlmEngine.load


def load_engine(config: VlmConfig, field: str) -> VlmEngine:
    """A new engine for `config`; a failure stops the run with a message naming the recipe field."""
    where = f"{field}: cannot load vision-language model {config.model!r} ({config.backend} backend)"
    if not config.model:
        raise ModelLoadError(f"{where}: no model given (set {field}.model or a preset)")
    if config.backend == "hf" and config.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise ModelLoadError(f"{where}: device cuda asked for but no GPU is visible to torch")
    path = config.model if config.backend == "openai" else resolve_model_path(config.model)
    try:
        return _loader(config.backend)(config, path, field)
    except ImportError as e:
        raise ModelLoadError(f"{where}: a package is missing ({e})") from e
    except Exception as e:  # noqa: BLE001 -- any load failure stops the run with this message
        raise ModelLoadError(f"{where}: {type(e).__name__}: {e}") from e


def shared_engine(config: VlmConfig, field: str) -> VlmEngine:
    """The process-wide engine of this model configuration, loaded on first use."""
    key = config.engine_key()
    with _loading:
        if key not in _engines:
            _engines[key] = load_engine(config, field)
        return _engines[key]


class VlmHandler(ModelHandler[VlmRequest, PredictionResult, VlmEngine]):
    """One role's handler: the role's generation settings over the shared engine.

    `field`: the recipe section of the role (`synthesize.vlm`, ...), named in load errors;
    `role`: its name in the run's model metrics (`vlm_<role>`)."""

    def __init__(self, config: VlmConfig, field: str, role: str) -> None:
        super().__init__(min_batch_size=config.min_batch_size, max_batch_size=config.max_batch_size)
        self.config = config
        self.field = field
        self.settings = GenerationSettings(config.max_new_tokens, config.sampling, f"vlm_{role}")

    @property
    def model_name(self) -> str:
        return self.config.display_name

    def load_model(self) -> VlmEngine:
        return shared_engine(self.config, self.field)

    def run_inference(self, batch: Sequence[VlmRequest], model: VlmEngine,
                      inference_args: Optional[dict[str, Any]] = None) -> Iterable[PredictionResult]:
        generations = model.run(batch, self.settings)
        return [PredictionResult(request, generation, self.model_name) for request, generation in zip(batch, generations)]

    def get_num_bytes(self, batch: Sequence[Any]) -> int:
        return sum(len(item.image.data) for item in batch)  # VlmRequests and ImageRecords both carry it

    def get_metrics_namespace(self) -> str:
        return self.settings.namespace
