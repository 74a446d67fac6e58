"""Loading a role's model once per process, failing at once with a message that names it.

RunInference shares a model across the threads of one transform; two transforms (or the
element-by-element retry of a failed batch) that use the same model would still load it
again. `load_shared` keeps one copy per process per model configuration.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from llavaforge.config.annotate import ModelConfig
from llavaforge.models.tiny import is_tiny, tiny_model_path

TORCH_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
OFFLINE_EXTRA = "pip install 'llavaforge[offline]'"


class ModelLoadError(RuntimeError):
    """A model that cannot be loaded: the run stops, naming the role and the model id."""


@dataclass(frozen=True)
class LoadedModel:
    """A role's loaded model; a dataclass, not a NamedTuple, because Beam's Shared holds it by weak reference."""

    model: Any  # the torch module (or engine) that runs
    processor: Any  # turns images (and text) into model inputs
    tokenizer: Any  # turns generated ids into text / labels into ids; None when not needed
    device: torch.device
    dtype: torch.dtype
    derived: dict = field(default_factory=dict)  # tensors computed once per model and reused by every batch (text embeddings)


Loader = Callable[[str, ModelConfig], LoadedModel]

_loaded: dict[tuple, LoadedModel] = {}
_lock = threading.Lock()


def model_identity(config: ModelConfig) -> tuple:
    """What makes two role configurations share one loaded model."""
    return (config.kind, config.model, config.device, config.effective_dtype, config.trust_remote_code,
            getattr(config, "compile_vision", False), getattr(config, "fused_attention", False))


def resolve_model_path(model_id: str) -> str:
    """Tiny-preset ids become their built local folder; anything else goes to from_pretrained."""
    return str(tiny_model_path(model_id)) if is_tiny(model_id) else model_id


def load_shared(role: str, config: ModelConfig, loader: Loader) -> LoadedModel:
    """The process-wide copy of the model `config` names, loaded on first use."""
    key = model_identity(config)
    with _lock:
        if key not in _loaded:
            _loaded[key] = load(role, config, loader)
        return _loaded[key]


def load(role: str, config: ModelConfig, loader: Loader) -> LoadedModel:
    where = f"annotate.{role}: cannot load {config.kind} model {config.model!r}"
    if not config.model:
        raise ModelLoadError(f"{where}: no model given (set annotate.{role}.model or a preset)")
    if config.device == "cuda" and not torch.cuda.is_available():
        raise ModelLoadError(f"{where}: device cuda asked for but no GPU is visible to torch")
    try:
        return loader(resolve_model_path(config.model), config)
    except ImportError as e:
        raise ModelLoadError(f"{where}: a package is missing ({e}); install it, e.g. {OFFLINE_EXTRA}") from e
    except Exception as e:  # noqa: BLE001 -- any load failure stops the run with this message
        raise ModelLoadError(f"{where}: {type(e).__name__}: {e}") from e


def hf_loaded(model_class: Any, processor_class: Any, path: str, config: ModelConfig,
              tokenizer_class: Any = None) -> LoadedModel:
    """A transformers model + processor through `from_pretrained`, on the configured device/dtype.

    transformers prefers safetensors and loads torch checkpoints with `weights_only=True`.
    """
    device = torch.device(config.device)
    dtype = TORCH_DTYPES[config.effective_dtype]
    remote = {"trust_remote_code": config.trust_remote_code}
    model = model_class.from_pretrained(path, dtype=dtype, **remote).to(device).eval()
    processor = processor_class.from_pretrained(path, **remote)
    tokenizer = tokenizer_class.from_pretrained(path, **remote) if tokenizer_class else getattr(processor, "tokenizer", None)
    return LoadedModel(model, processor, tokenizer, device, dtype, {})
