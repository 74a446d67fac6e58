"""Fused attention for image encoders transformers runs eagerly.

BLIP's vision attention in transformers is written out (matmul, softmax, matmul): on a GPU it
materialises a (heads x 577 x 577) score tensor per image and runs three kernels where torch's
`scaled_dot_product_attention` runs one (flash / memory-efficient attention). The replacement
computes the same attention; eval only (no attention dropout), and it returns no attention
weights (callers that ask for them get None).
"""

from __future__ import annotations

import types

import torch
from torch.nn import functional as F


def _sdpa_forward(self, hidden_states: torch.Tensor, **kwargs):
    batch, tokens, embed_dim = hidden_states.size()
    qkv = self.qkv(hidden_states).reshape(batch, tokens, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
    context = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2], scale=self.scale)
    return self.projection(context.transpose(1, 2).reshape(batch, tokens, embed_dim)), None


def fuse_blip_vision_attention(model: torch.nn.Module) -> int:
    """Route every BLIP vision attention module of `model` through SDPA; returns how many."""
    from transformers.models.blip.modeling_blip import BlipAttention

    fused = 0
    for module in model.modules():
        if isinstance(module, BlipAttention):
            module.forward = types.MethodType(_sdpa_forward, module)
            fused += 1
    return fused
