"""What llavaforge's own decoders (LLM and captioner) share: fixed-shape buckets and the token loop.

Both decode over preallocated (static) KV caches with a one-token step that can be compiled
with CUDA graphs, so each step is one graph replay instead of hundreds of Python-launched
kernels; shapes are rounded up to buckets so one compiled graph serves many batches.
"""

from __future__ import annotations

import inspect
from typing import Callable

import torch

FINISHED_CHECK_EVERY = 16  # steps between checks that every row has ended (each check waits for the GPU)


def bucket(n: int, size: int) -> int:
    return -(-n // size) * size


def batch_bucket(n: int) -> int:
    """Rows rounded up to a power of two, so few batch shapes need compiling."""
    return 1 << max(0, n - 1).bit_length()


def cache_argument(module) -> str:
    """The forward's name for the KV cache (`cache` in newer transformers)."""
    return "cache" if "cache" in inspect.signature(module.forward).parameters else "past_key_values"


def compile_step(step: Callable, compile: bool) -> Callable:
    """`step` compiled with CUDA graphs (fixed shapes), or as it is."""
    return torch.compile(step, mode="reduce-overhead", dynamic=False) if compile else step


def decode_loop(token: torch.Tensor, step: Callable[[torch.Tensor, int], torch.Tensor], max_new_tokens: int,
                eos_ids: torch.Tensor, pad_id: int, compiled: bool) -> torch.Tensor:
    """Token ids [rows, max_new_tokens]: `token` first, then `step(previous tokens, step index)`
    until every row has produced an EOS (padding after it) or the budget is spent."""
    out = torch.full((token.shape[0], max_new_tokens), pad_id, dtype=torch.long, device=token.device)
    finished = torch.zeros(token.shape[0], dtype=torch.bool, device=token.device)
    for index in range(max_new_tokens):
        token = torch.where(finished, pad_id, token)
        out[:, index] = token
        finished |= torch.isin(token, eos_ids)
        if index == max_new_tokens - 1 or (index % FINISHED_CHECK_EVERY == FINISHED_CHECK_EVERY - 1
                                           and bool(finished.all())):
            break
        if compiled:
            torch.compiler.cudagraph_mark_step_begin()
        token = step(token, index + 1).clone()  # a CUDA-graph output is overwritten by the next replay
    return out
