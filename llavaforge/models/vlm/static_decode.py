"""Batched VLM decoding over a preallocated KV cache: the LLM's own loop, prefilled from embeddings.

A VLM prompt is text tokens with image placeholders. The model's forward would embed the tokens
and put the image encodings in place of the placeholders; here that is done once, outside
(`prompt_embeddings`, from the encodings `hf.py` computed or cached), and the rows are prefilled
from those embeddings into the static cache of `models/llm/static_decode.StaticDecoder`. After
the prompt every step is a plain text token, so the LLM's one-token step, compiled with CUDA
graphs on cuda, decodes it.

Positions: models with multi-axis rotary positions for images (Qwen2-VL: `get_rope_index`) get
their 3-D prompt positions from the model, and text positions after the prompt are the token
count plus the model's per-row offset (`rope_deltas`); other models count tokens.

Only architectures whose forward is exactly "embed, scatter image encodings, run the language
model" are served (`STATIC_DECODE_MODEL_TYPES`, each checked token for token against `generate`
in the tests); the others use `generate`.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, Optional

import torch

from llavaforge.models.decoding import batch_bucket, bucket, decode_loop
from llavaforge.models.llm.static_decode import LENGTH_BUCKET, PREFILL_TOKENS, StaticDecoder, unsupported_reason

# model_type -> checked against generate (tests/models/vlm/test_static_decode.py)
STATIC_DECODE_MODEL_TYPES = frozenset({"idefics3", "qwen2_vl", "qwen2_5_vl"})
ROPE_INDEX_INPUTS = ("image_grid_thw", "video_grid_thw", "attention_mask", "mm_token_type_ids")


def static_decode_refusal(model: Any) -> Optional[str]:
    """Why the embedding-prefilled loop cannot decode `model` exactly, or None when it can."""
    model_type = getattr(model.config, "model_type", None)
    if model_type not in STATIC_DECODE_MODEL_TYPES:
        return f"model type {model_type!r} is not one of {sorted(STATIC_DECODE_MODEL_TYPES)}"
    return unsupported_reason(model)


def image_token_id(model: Any) -> int:
    config = model.config
    token = getattr(config, "image_token_id", None)
    return token if token is not None else config.image_token_index


def prompt_embeddings(model: Any, input_ids: torch.Tensor, encodings: list[torch.Tensor]) -> torch.Tensor:
    """Token embeddings of the prompts with each image's encoding in place of its placeholders
    (images in row order; an image's encoding fills its placeholders in order)."""
    embeds = model.get_input_embeddings()(input_ids)
    features = torch.cat([e.reshape(-1, embeds.shape[-1]) for e in encodings]).to(embeds.dtype)
    placeholders = input_ids == image_token_id(model)
    if int(placeholders.sum()) != features.shape[0]:
        raise ValueError(f"{int(placeholders.sum())} image placeholders for {features.shape[0]} image encodings")
    return embeds.masked_scatter(placeholders[..., None], features)


def prompt_positions(model: Any, inputs: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
    """(positions of the prompt tokens: [rows, width], or [3, rows, width] for multi-axis rotary
    positions; per-row offset [rows, 1] of the text positions that follow the prompt)."""
    mask = inputs["attention_mask"]
    base = getattr(model, "model", model)
    rope_index = getattr(base, "get_rope_index", None)
    if rope_index is not None and inputs.get("image_grid_thw") is not None:
        params = inspect.signature(rope_index).parameters
        kwargs = {name: inputs[name] for name in ROPE_INDEX_INPUTS if name in params and name in inputs}
        positions, deltas = rope_index(inputs["input_ids"], **kwargs)
        return positions, deltas.reshape(-1, 1).to(mask.device)
    return (mask.long().cumsum(dim=1) - 1).clamp(min=0), torch.zeros(mask.shape[0], 1, dtype=torch.long,
                                                                      device=mask.device)


def _rows(tensor: torch.Tensor, rows: int, dim: int) -> torch.Tensor:
    """`tensor` with rows past its own along `dim` filled by copies of its first row."""
    missing = rows - tensor.shape[dim]
    if not missing:
        return tensor
    first = tensor.narrow(dim, 0, 1)
    return torch.cat([tensor, first.expand(*[missing if d == dim else -1 for d in range(tensor.dim())])], dim=dim)


class VlmStaticDecoder(StaticDecoder):
    """`StaticDecoder` whose rows are prefilled from input embeddings instead of token ids."""

    def _forward_embeds(self, embeds, mask, positions, cache):
        out = self.model(inputs_embeds=embeds, attention_mask=mask, position_ids=positions, use_cache=True,
                         logits_to_keep=1, **{self.cache_argument: cache})
        return out.logits[:, -1, :]

    def _prefill_embeds(self, embeds, valid, positions, cache) -> torch.Tensor:
        rows, width, _ = embeds.shape
        columns = torch.arange(valid.shape[1], device=valid.device)
        chunk = max(1, min(width, PREFILL_TOKENS // rows))
        logits = None
        for t0 in range(0, width, chunk):
            query_columns = columns[t0:min(width, t0 + chunk)]
            causal = columns[None, :] <= query_columns[:, None]
            # A padding query attends to itself: a row of nothing but masked keys would give NaN.
            mask = (valid[:, None, :] & causal[None]) | (columns[None, :] == query_columns[:, None])[None]
            logits = self._forward_embeds(embeds[:, t0:t0 + chunk], mask[:, None], positions[..., query_columns], cache)
        return logits

    def decode_embedded(self, embeds: torch.Tensor, attention_mask: torch.Tensor, positions: torch.Tensor,
                        offsets: torch.Tensor, max_new_tokens: int, pick: Optional[Callable] = None) -> list[list[int]]:
        """New token ids per row (up to and including an EOS, then padding) for left-padded
        prompts given as embeddings [rows, width, hidden] with their mask and positions."""
        with self._lock, torch.inference_mode():
            rows, width = attention_mask.shape
            cache = self._fresh_cache(batch_bucket(rows), bucket(width + max_new_tokens, LENGTH_BUCKET))
            padded_rows, length = self._cache_shape
            embeds = _rows(embeds, padded_rows, 0)
            positions = _rows(positions, padded_rows, positions.dim() - 2)
            offsets = _rows(offsets, padded_rows, 0)
            valid = torch.zeros(padded_rows, length, dtype=torch.bool, device=embeds.device)
            valid[:, :width] = _rows(attention_mask.bool(), padded_rows, 0)
            greedy = pick is None
            logits = self._prefill_embeds(embeds, valid, positions, cache)
            first = logits.argmax(dim=-1) if greedy else pick(logits.float(), 0)
            next_position = valid.sum(dim=1, keepdim=True) + offsets

            def step(token: torch.Tensor, index: int) -> torch.Tensor:
                valid[:, width + index - 1] = True
                result = self._step(token[:, None], next_position + index - 1, valid, cache, greedy)
                return result if greedy else pick(result, index)

            out = decode_loop(first, step, max_new_tokens, self.eos_ids, self.pad_id, self.compiled)
            return out[:rows].tolist()
