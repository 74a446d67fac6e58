"""The process-wide VLM engines and the Beam handler of one VLM role.

`shared_engine` keeps one engine per process per `VlmConfig.engine_key`, so the roles that use
the same model (dense captioner, synthesizer, verifier) share it, its lock and its cache of
image encodings. `VlmHandler` is the Beam `ModelHandler` of one role over `VlmRequest`s; a
batch an engine raises on fails as a whole, and the stage retries it request by request (one
bad image is one reject). A request an endpoint gives up on comes back with
`Generation.error` set.
"""

from __future__ import annotations

import threading
from typing import Any, Callable, Iterable, Optional, Sequence

from apache_beam.ml.inference.base import ModelHandler, PredictionResult

from llavaforge.config.vlm import VlmConfig
from llavaforge.models.loading import ModelLoadError, resolve_model_path
from llavaforge.models.vlm.base import GenerationSettings, VlmEngine, VlmRequest

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
