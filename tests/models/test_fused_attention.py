"""BLIP's vision attention through SDPA computes what transformers' eager attention does."""

from __future__ import annotations

import torch

from llavaforge.config.annotate import CaptionerConfig
from llavaforge.config.presets import TINY_PREFIX
from llavaforge.models.captioner import CaptionerHandler, vision_encoder
from llavaforge.models.fused_attention import fuse_blip_vision_attention
from llavaforge.models.loading import resolve_model_path


def tiny_blip(fused: bool):
    config = CaptionerConfig(model=TINY_PREFIX + "blip", kind="blip", fused_attention=fused, max_new_tokens=8)
    return CaptionerHandler(config).load(resolve_model_path(config.model), config)


def test_fused_encoder_outputs_equal_the_eager_ones_and_captions_agree():
    eager, fused = tiny_blip(False), tiny_blip(True)
    pixels = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        a = vision_encoder(eager.model)(pixel_values=pixels).last_hidden_state
        b = vision_encoder(fused.model)(pixel_values=pixels).last_hidden_state
    assert torch.allclose(a, b, atol=1e-5)
    assert fuse_blip_vision_attention(torch.nn.Sequential()) == 0
    assert fuse_blip_vision_attention(eager.model) == len(vision_encoder(eager.model).encoder.layers)
