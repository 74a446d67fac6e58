"""Captioner `compile_vision`: which submodule is the image encoder, and compiled captions equal eager ones."""

from __future__ import annotations

import logging

import pytest
import torch

from llavaforge.models.captioner import CaptionerHandler, compile_vision_encoder, vision_encoder
from llavaforge.config.annotate import CaptionerConfig
from llavaforge.models.loading import resolve_model_path
from tests.models.vision_samples import mixed_sizes

TINY = "llavaforge-tiny/"


@pytest.mark.parametrize("kind, model_id, encoder_class", [
    ("blip", "blip", "BlipVisionModel"),
    ("git", "git", "GitVisionTransformer"),
    ("vision-encoder-decoder", "vit-bert", "ViTModel"),
])
def test_vision_encoder_is_found_by_name(kind, model_id, encoder_class):
    model = CaptionerHandler(CaptionerConfig(model=TINY + model_id, kind=kind)).load_model().model
    assert type(vision_encoder(model)).__name__ == encoder_class


def test_model_without_image_encoder_stays_uncompiled(caplog):
    module = torch.nn.Sequential(torch.nn.Linear(2, 2))
    with caplog.at_level(logging.WARNING):
        assert not compile_vision_encoder(module)
    assert "no image encoder" in caplog.text


def test_compile_vision_is_off_by_default():
    assert CaptionerConfig().compile_vision is False


@pytest.mark.slow  # CPU inductor builds C++ kernels: about 30 s on 2 cores
def test_compiled_vision_encoder_captions_like_eager():
    records = mixed_sizes()
    captions = {}
    for compiled in (False, True):
        config = CaptionerConfig(model=TINY + "blip", kind="blip", max_new_tokens=6, compile_vision=compiled)
        handler = CaptionerHandler(config)
        model = handler.load(resolve_model_path(config.model), config)  # its own copy, not the process-wide one
        assert (vision_encoder(model.model)._compiled_call_impl is not None) == compiled
        captions[compiled] = [r.inference for r in handler.run_inference(records, model)]
    assert captions[True] == captions[False]
