"""Batched decoding over a preallocated KV cache: llavaforge's own loop, one compiled step.

`generate` spends most of a small model's decoding step in Python (logits processors,
stopping criteria, cache bookkeeping) and, with a static cache, loses the shared-prefix
reuse. This loop keeps both wins:

- the KV cache is a transformers `StaticCache` of fixed shape that only grows (rows: at least
  the handler's batch size; length: rounded up to 256), so one compiled graph serves a whole
  run of full and partial batches; the cached system + few-shot prefix of each row is copied
  into it, so only each row's own tokens are prefilled;
- a row is `[padding][its prefix][padding][its own tokens][generated]`; a boolean mask built
  here (padding off) goes to the model as a 4-D mask, and positions come from the mask, so a
  row's prefix sits at the positions its KV was computed at;
- the one-token step (model forward + greedy pick) is one function; with `compile` it goes
  through `torch.compile(mode="reduce-overhead")`, i.e. CUDA graphs: no Python per layer;
- decoding attention folds each key/value head's group of query heads into the query-length
  axis (`grouped_sdpa`), so grouped-query models read their KV cache once per step instead
  of materialising it once per query head (what transformers' SDPA path does when a mask is
  given).

Models this cannot serve exactly (sliding-window or soft-capped attention, no
`logits_to_keep`) are refused by `unsupported_reason`; the caller falls back to `generate`.
"""

from __future__ import annotations

import inspect
import threading
from dataclasses import dataclass
from typing import Callable, Optional

import torch
import torch.nn.functional as F

from llavaforge.models.decoding import batch_bucket, bucket, cache_argument, compile_step, decode_loop

GROUPED_SDPA = "llavaforge_grouped_sdpa"
LENGTH_BUCKET = 256  # cache lengths are rounded up to this: fewer distinct compiled shapes
PREFILL_TOKENS = 65536  # tokens per prefill forward (rows x chunk): bounds activation memory

KvPerLayer = list[tuple[torch.Tensor, torch.Tensor]]  # per layer: keys, values [1, kv heads, length, head dim]


@dataclass
class DecodeRow:
    prefix_ids: list[int]  # the shared prefix (empty: none)
    prefix_kv: Optional[KvPerLayer]  # its KV cache, computed once per prefix (None when no prefix)
    ids: list[int]  # the row's own tokens after the prefix


def stacked_prefix_kv(kvs: list[Optional[KvPerLayer]], width: int, rows: int):
    """Per layer (index, keys, values) for a batch: each row's prefix KV left-padded with zeros
    to `width` (a row without a prefix is all padding); rows past `kvs` repeat the first row."""
    reference = next(kv for kv in kvs if kv is not None)
    shared = all(kv is reference for kv in kvs)
    for layer, (ref_k, ref_v) in enumerate(reference):
        if shared:  # one prefix for every row: a view, no copy
            yield layer, ref_k.expand(rows, -1, -1, -1), ref_v.expand(rows, -1, -1, -1)
            continue
        per_row = [kv[layer] if kv is not None else (ref_k[..., :0, :], ref_v[..., :0, :]) for kv in kvs]
        per_row += [per_row[0]] * (rows - len(kvs))
        yield (layer, torch.cat([F.pad(k, (0, 0, width - k.shape[-2], 0)) for k, _ in per_row]),
               torch.cat([F.pad(v, (0, 0, width - v.shape[-2], 0)) for _, v in per_row]))


def grouped_sdpa(module, query, key, value, attention_mask, **kwargs):
    """transformers attention function: SDPA that, for one query token, treats the query heads
    sharing a key/value head as that head's query rows, so the cache is read once per KV head."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    batch, heads, length, dim = query.shape
    kv_heads = key.shape[1]
    if length != 1 or kv_heads == heads:
        return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)
    grouped = query.reshape(batch, kv_heads, heads // kv_heads, dim)
    out = F.scaled_dot_product_attention(grouped, key, value, attn_mask=attention_mask, scale=kwargs.get("scaling"))
    return out.reshape(batch, heads, 1, dim).transpose(1, 2), None


def register_grouped_sdpa() -> None:
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(GROUPED_SDPA, grouped_sdpa)
    AttentionMaskInterface.register(GROUPED_SDPA, sdpa_mask)  # same masks as SDPA when transformers builds them


def unsupported_reason(model) -> Optional[str]:
    """Why this loop cannot decode `model` exactly, or None when it can."""
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    if "logits_to_keep" not in inspect.signature(model.forward).parameters:
        return f"{type(model).__name__}.forward has no logits_to_keep"
    if getattr(config, "sliding_window", None) and getattr(config, "use_sliding_window", True):
        return "sliding-window attention"
    if any(t != "full_attention" for t in getattr(config, "layer_types", None) or ()):
        return "layers other than full attention"
    if getattr(config, "attn_logit_softcapping", None):
        return "soft-capped attention logits"
    if getattr(config, "is_encoder_decoder", False):
        return "encoder-decoder model"
    return None


class StaticDecoder:
    """Decodes batches of rows over one reused `StaticCache`; returns new token ids per row."""

    def __init__(self, model, pad_id: int, eos_ids: set[int], compile: bool, rows: int = 1) -> None:
        register_grouped_sdpa()
        model.set_attn_implementation(GROUPED_SDPA)
        self.model = model
        self.pad_id = pad_id
        self.eos_ids = torch.tensor(sorted(eos_ids), device=model.device)
        self.cache_argument = cache_argument(model)
        self._cache = None
        self._cache_shape: tuple[int, int] = (batch_bucket(rows), 0)
        self._step: Callable = compile_step(self._forward_step, compile)
        self.compiled = compile
        self._lock = threading.Lock()  # Beam shares one loaded model across a worker's threads; the cache is one

    # -- cache and mask ----------------------------------------------------------------------

    def _fresh_cache(self, rows: int, length: int):
        """The reused cache, replaced by a larger one (a new compiled shape) only when a batch needs it."""
        from transformers import StaticCache

        rows, length = max(rows, self._cache_shape[0]), max(length, self._cache_shape[1])
        if self._cache is None or self._cache_shape != (rows, length):
            self._cache = None  # free the old one before allocating
            self._cache = StaticCache(config=self.model.config, max_cache_len=length)
            self._cache_shape = (rows, length)
        else:
            self._cache.reset()
        return self._cache

    def _fill_prefixes(self, cache, rows: list[DecodeRow], width: int, padded_rows: int) -> None:
        """Writes each row's prefix KV into cache positions [width - len(prefix), width)."""
        for layer, keys, values in stacked_prefix_kv([row.prefix_kv for row in rows], width, padded_rows):
            cache.update(keys, values, layer)

    def _layout(self, rows: list[DecodeRow], padded_rows: int, length: int, prefix_width: int, width: int):
        """(own-token ids [rows, width], valid mask [rows, length])."""
        ids = torch.full((padded_rows, width), self.pad_id, dtype=torch.long)
        valid = torch.zeros(padded_rows, length, dtype=torch.bool)
        for i in range(padded_rows):
            row = rows[i] if i < len(rows) else rows[0]  # bucket padding repeats the first row
            ids[i, width - len(row.ids):] = torch.tensor(row.ids, dtype=torch.long)
            valid[i, prefix_width - len(row.prefix_ids):prefix_width] = True
            valid[i, prefix_width + width - len(row.ids):prefix_width + width] = True
        device = self.model.device
        return ids.to(device), valid.to(device)

    # -- model calls ----------------------------------------------------------------------------

    def _forward(self, ids, mask, positions, cache):
        out = self.model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True,
                         logits_to_keep=1, **{self.cache_argument: cache})
        return out.logits[:, -1, :]

    def _forward_step(self, token, position, valid, cache, greedy: bool):
        logits = self._forward(token, valid[:, None, None, :], position, cache)
        return logits.argmax(dim=-1) if greedy else logits.float()

    def _prefill(self, ids, valid, positions, start: int, cache) -> torch.Tensor:
        """Runs the rows' own tokens (columns start.. of the cache) in chunks; last logits."""
        rows, width = ids.shape
        columns = torch.arange(valid.shape[1], device=valid.device)
        chunk = max(1, min(width, PREFILL_TOKENS // rows))
        logits = None
        for t0 in range(0, width, chunk):
            query_columns = columns[start + t0:start + min(width, t0 + chunk)]
            causal = columns[None, :] <= query_columns[:, None]
            # A padding query attends to itself: a row of nothing but masked keys would give NaN.
            mask = (valid[:, None, :] & causal[None]) | (columns[None, :] == query_columns[:, None])[None]
            logits = self._forward(ids[:, t0:t0 + chunk], mask[:, None], positions[:, query_columns], cache)
        return logits

    # -- decoding -------------------------------------------------------------------------------

    def decode(self, rows: list[DecodeRow], max_new_tokens: int, pick: Optional[Callable] = None) -> list[list[int]]:
        """New token ids per row (up to and including an EOS, then padding). `pick(logits, step)`
        chooses tokens from float logits; None decodes greedily inside the (compiled) step."""
        with self._lock, torch.inference_mode():
            prefix_width = max(len(row.prefix_ids) for row in rows)
            width = max(len(row.ids) for row in rows)
            cache = self._fresh_cache(batch_bucket(len(rows)), bucket(prefix_width + width + max_new_tokens,
                                                                      LENGTH_BUCKET))
            padded_rows, length = self._cache_shape
            ids, valid = self._layout(rows, padded_rows, length, prefix_width, width)
            positions = (valid.cumsum(dim=1) - 1).clamp(min=0)
            if prefix_width:
                self._fill_prefixes(cache, rows, prefix_width, padded_rows)
            greedy = pick is None
            logits = self._prefill(ids, valid, positions, prefix_width, cache)
            first = logits.argmax(dim=-1) if greedy else pick(logits.float(), 0)
            next_position = valid.sum(dim=1, keepdim=True)
            column = prefix_width + width

            def step(token: torch.Tensor, index: int) -> torch.Tensor:
                valid[:, column + index - 1] = True
                result = self._step(token[:, None], next_position + index - 1, valid, cache, greedy)
                return result if greedy else pick(result, index)

            out = decode_loop(first, step, max_new_tokens, self.eos_ids, self.pad_id, self.compiled)
            return out[:len(rows)].tolist()


class TokenPicker:
    """Chooses each step's tokens from float logits: repetition penalty, temperature, top-p,
    sampled from a generator seeded once per batch (the same batch and seed repeat exactly)."""

    def __init__(self, prompt_ids: list[list[int]], temperature: float, top_p: float,
                 repetition_penalty: float, seed: int) -> None:
        self.prompt_ids = prompt_ids
        self.temperature = temperature
        self.top_p = top_p
        self.penalty = repetition_penalty
        self.seed = seed
        self._seen: Optional[torch.Tensor] = None
        self._generator: Optional[torch.Generator] = None

    def _start(self, logits: torch.Tensor) -> None:
        rows, vocab = logits.shape
        self._generator = torch.Generator(device=logits.device).manual_seed(self.seed)
        if self.penalty != 1.0:
            self._seen = torch.zeros(rows, vocab, dtype=torch.bool, device=logits.device)
            for i in range(rows):
                ids = self.prompt_ids[i] if i < len(self.prompt_ids) else self.prompt_ids[0]
                self._seen[i, torch.tensor(ids, dtype=torch.long, device=logits.device)] = True

    def __call__(self, logits: torch.Tensor, step: int) -> torch.Tensor:
        if step == 0:
            self._start(logits)
        if self._seen is not None:
            penalised = torch.where(logits > 0, logits / self.penalty, logits * self.penalty)
            logits = torch.where(self._seen, penalised, logits)
        if self.temperature == 0:
            token = logits.argmax(dim=-1)
        else:
            probs = torch.softmax(logits / self.temperature, dim=-1)
            if self.top_p < 1.0:
                sorted_probs, order = probs.sort(dim=-1, descending=True)
                outside = sorted_probs.cumsum(dim=-1) - sorted_probs > self.top_p
                probs = probs.scatter(-1, order, sorted_probs.masked_fill(outside, 0.0))
            token = torch.multinomial(probs, 1, generator=self._generator).squeeze(-1)
        if self._seen is not None:
            self._seen[torch.arange(token.shape[0], device=token.device), token] = True
        return token
