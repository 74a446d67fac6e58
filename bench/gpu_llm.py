"""GPU benchmark of the `hf` LLM backend on random Qwen2.5-shaped models (one GPU, no network).

For each shape (Qwen2.5-0.5B and Qwen2.5-7B; random bf16 weights built on the GPU from the
config: speed depends on shapes, not values), with ~1,500-token prompts that share a
system + few-shot prefix and --new-tokens new tokens each, in this order (a shape that spends
--shape-budget-s skips the rest):
  plain                `generate` on one left-padded batch of --plain-batch prompts (the baseline)
  lf_static_compiled   llavaforge HfGenerator's own loop: static KV cache with the shared
                       prefix copied in, compiled one-token step (CUDA graphs), --batch
                       requests (first call compiles: reported separately)
  lf_static_eager      the same loop uncompiled, --plain-batch requests
  lf_generate_prefix   llavaforge through `generate` with the prefix KV reused, --plain-batch
  lf_static_compiled   again at --plain-batch (compiled for that batch size in an untimed call)
  naive                `generate`, one prompt at a time (batch 1)
Prints output tokens/s and ratios to `plain`; writes JSON after every measurement.

    python bench/gpu_llm.py                  # one H100; about 5-7 minutes
    python bench/gpu_llm.py --smoke          # any CPU: tiny shapes, checks the script runs
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Any, Callable

import torch
import transformers as tf

from llavaforge.models.llm.base import LlmRequest
from llavaforge.config.synthesize import HfBackendConfig, SamplingConfig
from llavaforge.models.llm.hf import HfGenerator
from llavaforge.models.llm.local_models import build_tiny_tokenizer
from llavaforge.prompts.library import load_library

SHAPES = {
    "qwen2.5-0.5b": dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
                         num_key_value_heads=2, vocab_size=151936, tie_word_embeddings=True),
    "qwen2.5-7b": dict(hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
                       num_key_value_heads=4, vocab_size=152064, tie_word_embeddings=False),
}
SMOKE_SHAPE = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                   num_key_value_heads=2, vocab_size=2048, tie_word_embeddings=True)


def build_model(shape: dict[str, Any], device: str, dtype: torch.dtype, tokenizer_size: int):
    """Random weights; output rows past the tokenizer's vocabulary zeroed, so greedy decoding
    only picks tokens that decode to text (and the methods' texts can be compared)."""
    config = tf.Qwen2Config(max_position_embeddings=32768, **shape)
    torch.manual_seed(0)
    with torch.device(device):
        model = tf.AutoModelForCausalLM.from_config(config, dtype=dtype)
    with torch.no_grad():
        model.get_output_embeddings().weight[tokenizer_size:] = 0
    # Random weights never stop by themselves; an unreachable EOS (a zeroed row) makes every
    # row generate exactly the requested tokens, so every method does the same work.
    model.generation_config.eos_token_id = shape["vocab_size"] - 1
    model.generation_config.pad_token_id = 0
    return model.eval()


def chat_tokens(tokenizer, messages: list[dict[str, str]]) -> int:
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return len(tokenizer(text, add_special_tokens=False).input_ids)


def make_requests(tokenizer, n: int, prompt_tokens: int, suffix_tokens: int) -> list[LlmRequest]:
    """`n` chat requests: one shared system + few-shot prefix, a distinct last user message each."""
    library = load_library()
    task = library.task("conversation")
    shots = [s for t in sorted(library.tasks) for s in library.task(t).spec.examples]
    messages = [{"role": "system", "content": task.spec.system}]
    while chat_tokens(tokenizer, messages) < prompt_tokens - suffix_tokens:
        shot = shots[len(messages) // 2 % len(shots)]
        messages += [{"role": "user", "content": shot.context}, {"role": "assistant", "content": shot.output}]
    words = "dog cat car tree person bench sky road bus kite ball cup table chair window plant".split()
    requests = []
    for i in range(n):
        text, j = "Tags: ", i
        while len(tokenizer(text).input_ids) < suffix_tokens:
            text += words[j % len(words)] + f" {i}, "
            j = j * 7 + 3
        requests.append(LlmRequest(tuple(messages + [{"role": "user", "content": text}]), seed=i,
                                   shared_prefix=len(messages)))
    return requests


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def timed(device: str, fn: Callable[[], tuple[int, list[str]]]) -> tuple[int, list[str], float]:
    sync(device)
    start = time.perf_counter()
    tokens, texts = fn()
    sync(device)
    return tokens, texts, time.perf_counter() - start


def agreement(texts: list[str], reference: list[str]) -> dict[str, float]:
    """How far each text matches the reference's (same requests): share equal, mean leading share equal."""
    pairs = list(zip(texts, reference))
    leading = [len(os.path.commonprefix([a, b])) / max(1, len(b)) for a, b in pairs]
    return {"texts_equal_plain": round(sum(a == b for a, b in pairs) / len(pairs), 3),
            "leading_chars_equal_plain": round(sum(leading) / len(leading), 3)}


def naive(gen: HfGenerator, requests: list[LlmRequest]) -> tuple[int, list[str]]:
    tokens, texts = 0, []
    for r in requests:
        ids = gen.tokenizer(gen.render(r.messages), add_special_tokens=False, return_tensors="pt").input_ids
        ids = ids.to(gen.model.device)
        with torch.inference_mode():
            out = gen.model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=gen.max_new_tokens,
                                     do_sample=False, pad_token_id=0)
        tokens += out.shape[1] - ids.shape[1]
        texts.append(gen._decode(0, out[0, ids.shape[1]:].tolist()).text)
    return tokens, texts


def plain(gen: HfGenerator, requests: list[LlmRequest]) -> tuple[int, list[str]]:
    tokenizer = gen.tokenizer
    tokenizer.padding_side = "left"
    batch = tokenizer([gen.render(r.messages) for r in requests], add_special_tokens=False, padding=True,
                      return_tensors="pt").to(gen.model.device)
    with torch.inference_mode():
        out = gen.model.generate(**batch, max_new_tokens=gen.max_new_tokens, do_sample=False, pad_token_id=0)
    new_tokens = out[:, batch.input_ids.shape[1]:].tolist()
    return len(new_tokens[0]) * len(requests), [gen._decode(0, t).text for t in new_tokens]


def backend(gen: HfGenerator, requests: list[LlmRequest]) -> tuple[int, list[str]]:
    generations = gen.generate(requests)
    return sum(g.tokens_out for g in generations), [g.text for g in generations]


def run_shape(name: str, shape: dict[str, Any], args, device: str, tokenizer, record: Callable) -> None:
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    model = build_model(shape, device, dtype, len(tokenizer))
    sampling = SamplingConfig()
    requests = make_requests(tokenizer, max(args.batch, args.plain_batch), args.prompt_tokens, args.suffix_tokens)
    record(name, "prompt_tokens", chat_tokens(tokenizer, list(requests[0].messages)))

    def generator(rows: int = 1, **config) -> HfGenerator:
        return HfGenerator(model, tokenizer, HfBackendConfig(**config), args.new_tokens, sampling, batch_rows=rows)

    def stock(**config) -> HfGenerator:
        model.set_attn_implementation("sdpa")  # the baselines run transformers as shipped
        return generator(**config)

    compiled: dict[int, HfGenerator] = {}

    def static_compiled(rows: int, warm: list[LlmRequest] = ()) -> Callable[[], HfGenerator]:
        """The compiled generator for `rows`-row batches; `warm`: a first call not timed (it compiles)."""
        def make() -> HfGenerator:
            if rows not in compiled:
                compiled[rows] = generator(rows, static_cache=True, compile=not args.smoke)
                if warm:
                    compiled[rows].generate(warm)
            return compiled[rows]
        return make

    # Most important first: a shape that runs out of its time budget drops the rest.
    measures = [
        (f"plain_batch{args.plain_batch}", lambda: stock(static_cache=False, prefix_reuse=False), plain,
         requests[: args.plain_batch]),
        (f"lf_static_compiled_batch{args.batch}_first_call", static_compiled(args.batch), backend,
         requests[: args.batch]),
        (f"lf_static_compiled_batch{args.batch}", static_compiled(args.batch), backend, requests[: args.batch]),
        (f"lf_static_eager_batch{args.plain_batch}", lambda: generator(static_cache=True, compile=False), backend,
         requests[: args.plain_batch]),
        (f"lf_generate_prefix_batch{args.plain_batch}", lambda: stock(static_cache=False), backend,
         requests[: args.plain_batch]),
        (f"lf_static_compiled_batch{args.plain_batch}",
         static_compiled(args.plain_batch, warm=requests[: args.plain_batch]), backend, requests[: args.plain_batch]),
        ("naive_batch1", lambda: stock(static_cache=False, prefix_reuse=False), naive, requests[: args.naive_prompts]),
    ]
    started = time.perf_counter()
    reference: list[str] = []  # plain generate's texts: each other method's texts are compared with them
    for label, make, fn, batch in measures:
        if time.perf_counter() - started > args.shape_budget_s:
            record(name, label, {"skipped": f"shape time budget of {args.shape_budget_s} s spent"})
            continue
        try:
            gen = make()
            tokens, texts, seconds = timed(device, lambda: fn(gen, batch))
            reference = reference or texts
            record(name, label, {"tokens": tokens, "seconds": round(seconds, 2), "tok_s": round(tokens / seconds, 1),
                                 **agreement(texts, reference)})
        except Exception as e:  # noqa: BLE001 -- one failed measure must not lose the others
            record(name, label, {"error": f"{type(e).__name__}: {e}"[:800]})
    del model, compiled
    if device == "cuda":
        torch.cuda.empty_cache()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny shapes on CPU")
    parser.add_argument("--shapes", nargs="+", default=list(SHAPES))
    parser.add_argument("--prompt-tokens", type=int, default=1500)
    parser.add_argument("--suffix-tokens", type=int, default=200)
    parser.add_argument("--new-tokens", type=int, default=256)
    parser.add_argument("--plain-batch", type=int, default=64)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--naive-prompts", type=int, default=1)
    parser.add_argument("--shape-budget-s", type=float, default=150.0,
                        help="after this many seconds on one shape, its remaining measures are skipped")
    parser.add_argument("--out", default="bench/results/gpu_llm.json")
    args = parser.parse_args()
    if args.smoke:
        args.prompt_tokens, args.suffix_tokens, args.new_tokens = 200, 40, 8
        args.plain_batch, args.batch = 4, 8
    device = "cuda" if torch.cuda.is_available() and not args.smoke else "cpu"
    tokenizer = build_tiny_tokenizer()
    results: dict[str, Any] = {
        "device": torch.cuda.get_device_name() if device == "cuda" else platform.processor() or "cpu",
        "torch": torch.__version__, "transformers": tf.__version__, "smoke": args.smoke,
        "new_tokens": args.new_tokens, "shapes": {}}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)

    def record(shape: str, key: str, value: Any) -> None:
        entry = results["shapes"].setdefault(shape, {})
        entry[key] = value
        base = entry.get(f"plain_batch{args.plain_batch}")
        if base and isinstance(value, dict):
            for k, v in entry.items():
                if isinstance(v, dict) and "tok_s" in v:
                    v["vs_plain"] = round(v["tok_s"] / base["tok_s"], 2)
        print(f"{shape:14} {key:32} {value}", flush=True)
        out.write_text(json.dumps(results, indent=2))

    started = time.perf_counter()
    for name in args.shapes:
        run_shape(name, SMOKE_SHAPE if args.smoke else SHAPES[name], args, device, tokenizer, record)
    results["total_seconds"] = round(time.perf_counter() - started, 1)
    out.write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
