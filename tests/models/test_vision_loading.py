"""Model loading: one copy per process per model, clear errors naming role and id, seeded tiny builds."""

from __future__ import annotations

import sys
import typing

import pytest
import torch
from safetensors.torch import load_file

from llavaforge.models import loading, tiny
from llavaforge.config.annotate import CaptionerConfig, OcrConfig, TaggerConfig
from llavaforge.models.captioner import MODEL_CLASSES
from llavaforge.models.loading import ModelLoadError
from llavaforge.models.ocr import OcrHandler
from llavaforge.models.tagger import TaggerHandler

CLIP = TaggerConfig(model="llavaforge-tiny/clip", kind="clip")


def test_same_model_loads_once_per_process(monkeypatch):
    monkeypatch.setattr(loading, "_loaded", {})
    calls = []
    original = TaggerHandler.load
    monkeypatch.setattr(TaggerHandler, "load", lambda self, path, config: calls.append(path) or original(self, path, config))
    first = TaggerHandler(CLIP).load_model()
    second = TaggerHandler(CLIP.model_copy(update={"top_k": 2, "vocabulary": ["cat"]})).load_model()
    assert first is second and len(calls) == 1


def test_unknown_model_names_role_and_id():
    with pytest.raises(ModelLoadError, match=r"annotate\.tagger.*'/nonexistent/clip-model'"):
        TaggerHandler(TaggerConfig(model="/nonexistent/clip-model", kind="clip")).load_model()


def test_missing_model_names_the_field():
    with pytest.raises(ModelLoadError, match=r"annotate\.ocr\.model"):
        OcrHandler(OcrConfig()).load_model()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU message")
def test_cuda_without_gpu_fails_at_once():
    config = CaptionerConfig(model="llavaforge-tiny/blip", device="cuda")
    with pytest.raises(ModelLoadError, match=r"annotate\.captioner.*llavaforge-tiny/blip.*no GPU"):
        loading.load("captioner", config, lambda path, cfg: pytest.fail("must not load"))


def test_missing_package_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "rapidocr_onnxruntime", None)  # import fails as if not installed
    with pytest.raises(ModelLoadError, match=r"annotate\.ocr.*llavaforge\[offline\]"):
        config = OcrConfig(model="rapidocr")
        loading.load("ocr", config, OcrHandler(config).load)


def test_config_errors_name_the_field():
    with pytest.raises(ValueError, match="min_batch_size"):
        TaggerConfig(model="x", min_batch_size=8, max_batch_size=2)
    with pytest.raises(ValueError, match="prompt_template"):
        TaggerConfig(model="x", prompt_template="no slot")
    with pytest.raises(ValueError, match="kind"):
        TaggerConfig(model="x", kind="resnet")


def test_every_captioner_kind_names_classes_transformers_has():
    import transformers

    kinds = typing.get_args(CaptionerConfig.model_fields["kind"].annotation)
    assert set(MODEL_CLASSES) == set(kinds)
    for names in MODEL_CLASSES.values():  # looked up only when a model loads: a typo would wait until then
        assert all(isinstance(getattr(transformers, name), type) for name in names if name)


def test_dtype_defaults_follow_the_device():
    assert CaptionerConfig(device="cpu").effective_dtype == "fp32"
    assert CaptionerConfig(device="cuda").effective_dtype == "bf16"
    assert CaptionerConfig(device="cuda", dtype="fp16").effective_dtype == "fp16"


def test_tiny_models_are_built_deterministically(tmp_path, monkeypatch):
    weights = []
    for run in ("a", "b"):
        monkeypatch.setenv("LLAVAFORGE_CACHE", str(tmp_path / run))
        weights.append(load_file(tiny.tiny_model_path("llavaforge-tiny/vit-classifier") / "model.safetensors"))
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


def test_unknown_tiny_model_lists_the_known_ones():
    with pytest.raises(ValueError, match="llavaforge-tiny/blip"):
        tiny.tiny_model_path("llavaforge-tiny/nope")
