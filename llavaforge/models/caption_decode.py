"""Greedy BLIP captioning with llavaforge's own loop: static caches and a compiled one-token step.

On a GPU, BLIP's `generate` at batch 256 spends more time launching the text decoder's
kernels from Python (20 steps x 12 layers of self- and cross-attention) than in the image
encoder. This loop runs the same model, greedily, with
- an `EncoderDecoderCache` of two transformers `StaticCache`s: the caption's own tokens (a
  fixed length) and the image tokens' cross-attention keys/values (computed once, by the
  first step, then read by every step);
- an additive 4-D mask built here, so every step has the same shapes;
- the one-token step compiled with CUDA graphs (`compile`): one graph replay per token.
Batches are padded to the handler's batch size so that partial batches reuse the graph.
"""

from __future__ import annotations

import threading

import torch

from llavaforge.models.decoding import batch_bucket, bucket, cache_argument, compile_step, decode_loop

CAPTION_LENGTH_BUCKET = 32


def supports_greedy_decoder(model) -> bool:
    """BLIP-style captioners: a `vision_model`, a `text_decoder` and a text config with BOS/SEP ids."""
    text = getattr(model.config, "text_config", None)
    return (hasattr(model, "vision_model") and hasattr(model, "text_decoder") and text is not None
            and text.bos_token_id is not None and text.sep_token_id is not None)


class BlipGreedyDecoder:
    def __init__(self, model, max_new_tokens: int, compile: bool, rows: int = 1) -> None:
        text = model.config.text_config
        self.model = model
        self.max_new_tokens = max_new_tokens
        self.bos_id, self.pad_id = text.bos_token_id, text.pad_token_id or 0
        self.eos_ids = torch.tensor([text.sep_token_id], device=model.device)
        self.cache_argument = cache_argument(model.text_decoder)
        self.compiled = compile
        self.rows = batch_bucket(rows)
        self.length = bucket(max_new_tokens + 1, CAPTION_LENGTH_BUCKET)  # BOS + the caption
        self._step = compile_step(self._forward, compile)
        self._cache = None
        self._cache_shape: tuple[int, int] = (0, 0)
        self._lock = threading.Lock()  # Beam shares one loaded model across a worker's threads

    def _fresh_cache(self, rows: int, image_tokens: int):
        from transformers import EncoderDecoderCache, StaticCache

        if self._cache is None or self._cache_shape != (rows, image_tokens):
            self._cache = None
            text = self.model.config.text_config
            self._cache = EncoderDecoderCache(StaticCache(config=text, max_cache_len=self.length),
                                              StaticCache(config=text, max_cache_len=image_tokens))
            self._cache_shape = (rows, image_tokens)
        else:
            self._cache.reset()
        return self._cache

    def _forward(self, token, position, valid, image_embeds, cache):
        mask = torch.zeros(valid.shape, dtype=image_embeds.dtype, device=valid.device)
        mask = mask.masked_fill(~valid, torch.finfo(image_embeds.dtype).min)[:, None, None, :]
        out = self.model.text_decoder(input_ids=token, attention_mask=mask, position_ids=position,
                                      encoder_hidden_states=image_embeds, use_cache=True,
                                      **{self.cache_argument: cache})
        return out.logits[:, -1, :].argmax(dim=-1)

    def caption_ids(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """New token ids [images, max_new_tokens] (SEP ends a caption; padding after it)."""
        images = pixel_values.shape[0]
        rows = max(self.rows, batch_bucket(images))
        if rows > images:  # same shapes for a partial batch: repeat the first image
            pixel_values = torch.cat([pixel_values, pixel_values[:1].expand(rows - images, -1, -1, -1)])
        with self._lock, torch.inference_mode():
            image_embeds = self.model.vision_model(pixel_values=pixel_values)[0]
            cache = self._fresh_cache(rows, image_embeds.shape[1])
            valid = torch.zeros(rows, self.length, dtype=torch.bool, device=pixel_values.device)
            valid[:, 0] = True
            bos = torch.full((rows, 1), self.bos_id, dtype=torch.long, device=pixel_values.device)
            position = torch.zeros(1, 1, dtype=torch.long, device=pixel_values.device)
            first = self._forward(bos, position, valid, image_embeds, cache)  # also fills the cross-attention cache

            def step(token: torch.Tensor, index: int) -> torch.Tensor:
                valid[:, index] = True
                return self._step(token[:, None], position + index, valid, image_embeds, cache)

            out = decode_loop(first, step, self.max_new_tokens, self.eos_ids, self.pad_id, self.compiled)
        return out[:images]
