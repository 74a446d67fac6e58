"""CPU tokens/s of llavaforge's `hf` backend vs plain one-prompt-at-a-time `generate`.

Same model, same requests (the packaged prompt library: system + few-shot prefix shared by
every request of a task, one image description each), greedy, in one run:

  baseline   for each request: chat template -> tokenizer -> model.generate (batch 1)
  llavaforge HfGenerator.generate over the whole batch (length-sorted, left-padded,
             shared-prefix KV cache reused)

    python bench/llm_cpu.py [--model tiny/qwen2] [--requests 16] [--max-new-tokens 32]
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch
import transformers

from llavaforge.models.llm.base import LlmRequest
from llavaforge.config.synthesize import HfBackendConfig, SamplingConfig
from llavaforge.models.llm.hf import HfGenerator
from llavaforge.prompts.library import load_library

CONTEXTS = ["Tags: tabby cat, sofa, cushion", "Captions:\n- A red car parked near a tall building.",
            "Tags: espresso, cup, saucer", "Objects (label: [x1, y1, x2, y2]):\ndog: [0.100, 0.200, 0.500, 0.900]",
            "Tags: rocket, launch pad, smoke", "Captions:\n- Two children fly a kite on a beach."]


def bench_requests(n: int) -> list[LlmRequest]:
    library = load_library()
    tasks = sorted(library.tasks)
    requests = []
    for i in range(n):
        task = library.task(tasks[i % len(tasks)])
        messages = task.messages(CONTEXTS[i % len(CONTEXTS)])
        requests.append(LlmRequest(tuple(messages), seed=i, shared_prefix=len(messages) - 1))
    return requests


def one_at_a_time(gen: HfGenerator, requests: list[LlmRequest]) -> int:
    tokens = 0
    for r in requests:
        ids = gen.tokenizer(gen.render(r.messages), add_special_tokens=False, return_tensors="pt").input_ids
        with torch.inference_mode():
            out = gen.model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=gen.max_new_tokens,
                                     do_sample=False, pad_token_id=gen.pad_id)
        tokens += out.shape[1] - ids.shape[1]
    return tokens


def timed(fn):
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="tiny/qwen2")
    parser.add_argument("--requests", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    args = parser.parse_args()

    gen = HfGenerator.load(args.model, HfBackendConfig(), args.max_new_tokens, SamplingConfig())
    requests = bench_requests(args.requests)
    gen.generate(requests[:2])  # warm-up (first-call allocations), not timed
    base_tokens, base_s = timed(lambda: one_at_a_time(gen, requests))
    ours, ours_s = timed(lambda: gen.generate(requests))
    ours_tokens = sum(g.tokens_out for g in ours)
    prompt_tokens = sum(g.tokens_in for g in ours) // len(ours)
    result = {
        "model": args.model, "requests": len(requests), "max_new_tokens": args.max_new_tokens,
        "mean_prompt_tokens": prompt_tokens,
        "baseline_generate_batch1_tok_s": round(base_tokens / base_s, 1),
        "llavaforge_hf_tok_s": round(ours_tokens / ours_s, 1),
        "ratio": round((ours_tokens / ours_s) / (base_tokens / base_s), 2),
        "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
        "transformers": transformers.__version__, "machine": platform.processor() or platform.machine(),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
