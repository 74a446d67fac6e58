"""`hf` backend: a local transformers causal LM, batched.

Requests are rendered with the tokenizer's chat template (or a plain few-shot completion
template for base models) and generated together, left-padded, in one `generate` call per
batch (Beam's BatchElements bounds the batch). With `prefix_reuse`, the KV cache of each
shared system + few-shot prefix is computed once, kept (LRU), and placed in the rows that
use it: a row is `[padding][its prefix][padding][its own tokens]`, padding masked, so the
prefix never goes through the model again and positions stay those it was computed at.
With `static_cache`, batches are decoded by `static_decode.StaticDecoder` (own loop over a
preallocated cache, optionally compiled with CUDA graphs) instead of `generate`.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Optional, Sequence

import torch

from llavaforge.models.llm.base import Generation, LlmHandler, LlmRequest, Message
from llavaforge.config.synthesize import HfBackendConfig, SamplingConfig
from llavaforge.models.llm.local_models import resolve_model
from llavaforge.models.llm.static_decode import (DecodeRow, StaticDecoder, TokenPicker, stacked_prefix_kv,
                                                  unsupported_reason)

log = logging.getLogger(__name__)

COMPLETION_TURN = {"user": "### Notes\n{content}\n### Output\n", "assistant": "{content}\n\n"}
COMPLETION_STOP = "\n### "
PREFIX_CACHE_ENTRIES = 16


def _cache_kwarg() -> str:
    """`generate`'s name for a prepared KV cache: `cache` in new transformers, else the old one."""
    from transformers.generation import utils

    return "cache" if "cache" in getattr(utils, "ALL_CACHE_NAMES", ()) else "past_key_values"


def _layer_tensors(cache) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per-layer (keys, values) of a dynamic cache, across transformers versions."""
    if hasattr(cache, "layers"):
        return [(layer.keys, layer.values) for layer in cache.layers]
    return list(zip(cache.key_cache, cache.value_cache))


def completion_prompt(messages: Sequence[Message], add_generation_prompt: bool = True) -> str:
    """Few-shot text for base models without a chat template."""
    parts = []
    for m in messages:
        template = COMPLETION_TURN.get(m["role"], "{content}\n\n")
        parts.append(template.format(content=m["content"]))
    return "".join(parts)


@dataclass
class _Prompt:
    prefix: Optional[str]  # shared text whose KV cache is reused; None: no reuse
    ids: list[int]  # the tokens after the prefix (all tokens when prefix is None)
    seed: int


class HfGenerator:
    """A loaded model + tokenizer that turns batches of requests into generations."""

    def __init__(self, model, tokenizer, config: HfBackendConfig, max_new_tokens: int,
                 sampling: SamplingConfig, batch_rows: int = 1) -> None:
        """`batch_rows`: the usual batch size; the static cache is made for at least that many rows,
        so partial batches reuse the full batches' compiled step."""
        self.model = model
        self.tokenizer = tokenizer
        self.config = config
        self.max_new_tokens = max_new_tokens
        self.sampling = sampling
        self.chat = config.prompt_style == "chat" or (config.prompt_style == "auto" and bool(tokenizer.chat_template))
        self._prefix_caches: OrderedDict[str, tuple[list[int], Any]] = OrderedDict()
        self._cache_kwarg = _cache_kwarg()
        eos = model.generation_config.eos_token_id
        self.eos_ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [tokenizer.eos_token_id])
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else min(self.eos_ids)
        self.static_cache, self.compile = config.decoding(on_gpu=model.device.type == "cuda")
        self.static = self._static_decoder(batch_rows) if self.static_cache else None
        # generate's own static cache cannot take a prepared prefix
        self.reuse_prefix = config.prefix_reuse and (self.static is not None or not self.static_cache)

    def _static_decoder(self, batch_rows: int) -> Optional[StaticDecoder]:
        reason = unsupported_reason(self.model)
        if reason:
            log.warning("hf backend: static_cache falls back to generate's static cache for this model (%s)", reason)
            return None
        return StaticDecoder(self.model, self.pad_id, self.eos_ids, compile=self.compile, rows=batch_rows)

    @classmethod
    def load(cls, model_name: str, config: HfBackendConfig, max_new_tokens: int,
             sampling: SamplingConfig, batch_rows: int = 1) -> "HfGenerator":
        from transformers import AutoModelForCausalLM, AutoTokenizer

        path = resolve_model(model_name)
        device = config.device if config.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
        dtype = config.dtype if config.dtype != "auto" else ("bfloat16" if device == "cuda" else "float32")
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=config.trust_remote_code)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, dtype),
                                                     trust_remote_code=config.trust_remote_code)
        return cls(model.to(device).eval(), tokenizer, config, max_new_tokens, sampling, batch_rows)

    # -- prompts ---------------------------------------------------------------------------

    def render(self, messages: Sequence[Message], add_generation_prompt: bool = True) -> str:
        if self.chat:
            return self.tokenizer.apply_chat_template(list(messages), tokenize=False,
                                                      add_generation_prompt=add_generation_prompt)
        return completion_prompt(messages, add_generation_prompt)

    def _encode(self, text: str, at_start: bool) -> list[int]:
        # Chat templates spell out their special tokens; completion text gets the model's BOS.
        return self.tokenizer(text, add_special_tokens=at_start and not self.chat).input_ids

    def _prompt(self, request: LlmRequest) -> _Prompt:
        full = self.render(request.messages)
        if self.reuse_prefix and request.shared_prefix:
            prefix = self.render(request.messages[: request.shared_prefix], add_generation_prompt=False)
            if prefix and full.startswith(prefix):
                return _Prompt(prefix, self._encode(full[len(prefix):], at_start=False), request.seed)
        return _Prompt(None, self._encode(full, at_start=True), request.seed)

    def _prefix_kv(self, prefix: str) -> tuple[list[int], list[tuple[torch.Tensor, torch.Tensor]]]:
        """(prefix ids, per-layer (keys, values) of the prefix for one row), computed once per prefix."""
        if prefix in self._prefix_caches:
            self._prefix_caches.move_to_end(prefix)
            return self._prefix_caches[prefix]
        ids = self._encode(prefix, at_start=True)
        with torch.inference_mode():
            out = self.model(input_ids=torch.tensor([ids], device=self.model.device), use_cache=True)
        entry = (ids, _layer_tensors(getattr(out, self._cache_kwarg)))
        self._prefix_caches[prefix] = entry
        if len(self._prefix_caches) > PREFIX_CACHE_ENTRIES:
            self._prefix_caches.popitem(last=False)
        return entry

    def _batch_cache(self, kvs: list[Optional[list[tuple[torch.Tensor, torch.Tensor]]]], width: int):
        """One cache for the batch: each row's prefix KV, left-padded with zeros to `width`."""
        from transformers import DynamicCache

        try:
            cache = DynamicCache(config=self.model.config)
        except TypeError:  # older transformers: no config argument
            cache = DynamicCache()
        for layer, keys, values in stacked_prefix_kv(kvs, width, len(kvs)):
            cache.update(keys, values, layer)
        return cache

    # -- generation ------------------------------------------------------------------------

    def _generation_kwargs(self, seed: int) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"max_new_tokens": self.max_new_tokens, "pad_token_id": self.pad_id,
                                  "eos_token_id": sorted(self.eos_ids)}
        if self.sampling.temperature > 0:
            torch.manual_seed(seed)  # batch-level: the same batch with the same seeds repeats exactly
            kwargs.update(do_sample=True, temperature=self.sampling.temperature, top_p=self.sampling.top_p)
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        if self.sampling.repetition_penalty != 1.0:
            kwargs["repetition_penalty"] = self.sampling.repetition_penalty
        if self.static_cache:
            kwargs["cache_implementation"] = "static"
            if not self.compile:
                kwargs["disable_compile"] = True
        return kwargs

    def _decode_static(self, prompts: list[_Prompt]) -> list[Generation]:
        prefixes = [self._prefix_kv(p.prefix) if p.prefix is not None else None for p in prompts]
        rows = [DecodeRow(prefix[0] if prefix else [], prefix[1] if prefix else None, p.ids)
                for p, prefix in zip(prompts, prefixes)]
        sampling = self.sampling
        pick = None
        if sampling.temperature > 0 or sampling.repetition_penalty != 1.0:
            pick = TokenPicker([row.prefix_ids + row.ids for row in rows], sampling.temperature, sampling.top_p,
                               sampling.repetition_penalty, prompts[0].seed)
        new_tokens = self.static.decode(rows, self.max_new_tokens, pick)
        return [self._decode(len(row.prefix_ids) + len(row.ids), tokens) for row, tokens in zip(rows, new_tokens)]

    def _generate_batch(self, prompts: list[_Prompt]) -> list[Generation]:
        """One `generate` call for the whole batch. Each row is
        `[padding][its prefix][padding][its own tokens]`, padding masked: positions come from
        the mask, so a row's prefix sits at positions 0.. as when its KV cache was computed."""
        prefixes = [self._prefix_kv(p.prefix) if p.prefix is not None else None for p in prompts]
        prefix_width = max((len(ids) for ids, _ in filter(None, prefixes)), default=0)
        width = max(len(p.ids) for p in prompts)
        rows, masks = [], []
        for p, prefix in zip(prompts, prefixes):
            prefix_ids = prefix[0] if prefix else []
            before, after = prefix_width - len(prefix_ids), width - len(p.ids)
            rows.append([self.pad_id] * before + prefix_ids + [self.pad_id] * after + p.ids)
            masks.append([0] * before + [1] * len(prefix_ids) + [0] * after + [1] * len(p.ids))
        device = self.model.device
        inputs = {"input_ids": torch.tensor(rows, device=device),
                  "attention_mask": torch.tensor(masks, device=device)}
        if prefix_width:
            kvs = [prefix[1] if prefix else None for prefix in prefixes]
            inputs[self._cache_kwarg] = self._batch_cache(kvs, prefix_width)
        with torch.inference_mode():
            out = self.model.generate(**inputs, **self._generation_kwargs(prompts[0].seed))
        new_tokens = out[:, len(rows[0]):].tolist()
        return [self._decode(sum(mask), tokens) for mask, tokens in zip(masks, new_tokens)]

    def _decode(self, tokens_in: int, tokens: list[int]) -> Generation:
        end = next((i + 1 for i, t in enumerate(tokens) if t in self.eos_ids), len(tokens))
        text = self.tokenizer.decode(tokens[:end], skip_special_tokens=True)
        if not self.chat:
            text = text.split(COMPLETION_STOP, 1)[0]
        return Generation(text=text, tokens_in=tokens_in, tokens_out=end)

    def generate(self, requests: Sequence[LlmRequest]) -> list[Generation]:
        """All requests in one batch: on small batches decoding is bound by reading the weights
        once per step, so one call for all beats one call per prefix."""
        prompts = [self._prompt(r) for r in requests]
        return self._decode_static(prompts) if self.static else self._generate_batch(prompts)


class HfLlmHandler(LlmHandler[HfGenerator]):
    backend = "hf"

    def load(self) -> HfGenerator:
        return HfGenerator.load(self.model_name, self.config, self.max_new_tokens, self.sampling,
                                self.max_batch_size)

    def generate(self, model: HfGenerator, requests: Sequence[LlmRequest]) -> list[Generation]:
        return model.generate(requests)
