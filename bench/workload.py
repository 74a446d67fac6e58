"""The realistic workload every end-to-end benchmark uses (defined once, here).

- Task mix: LLaVA-Instruct-158K's 58K conversation : 23K detail : 77K reasoning, two samples
  per image (158K samples over ~80K COCO images), drawn as the pipeline draws them
  (`synthesize.task_mix: weighted`, `tasks_per_image: 2`).
- New tokens per sample: log-normal per task with the medians and spreads below, capped at
  `max_new_tokens` 1024. ASSUMED, not measured: LLaVA-Instruct cannot be downloaded here. The
  medians are read off the examples in the LLaVA paper and its released prompt files (a
  multi-turn conversation of 3-5 exchanges ~250 tokens, a detailed description ~150, a
  reasoning answer ~200); the spread (sigma 0.45) gives a 5-95% range of about 0.5x-2x.
- LLM: Qwen2.5-7B-shaped (28 layers, hidden 3584, 28 heads, 4 KV heads, ffn 18944), ~1,500-token
  prompts of which the system + few-shot prefix (~1,200) is shared per task.
- Vision: the `hub` preset's roles and batch sizes (BLIP captioner 128, RT-DETR 64, CLIP 256);
  OCR off (RapidOCR runs on CPU and was not measured on a GPU).
- Images: 640x480 JPEGs (~60-90 KB), a few near-duplicates and repeated questions are added by
  the scaling benchmark.
"""

from __future__ import annotations

import hashlib
import math

TASK_WEIGHTS = {"conversation": 58.0, "detail": 23.0, "reasoning": 77.0}
SAMPLES_PER_IMAGE = 2
MAX_NEW_TOKENS = 1024
NEW_TOKENS_MEDIAN = {"conversation": 250, "detail": 150, "reasoning": 200}
NEW_TOKENS_SIGMA = 0.45
PROMPT_TOKENS, SHARED_PREFIX_TOKENS = 1500, 1200
QWEN25_7B = dict(hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
                 num_key_value_heads=4, vocab_size=152064)
IMAGE_SIZE = (640, 480)

# The recipe of the realistic workload (on top of the `hub` preset).
RECIPE = {
    "preset": "hub",
    "annotate.ocr.enabled": False,
    "synthesize.task_mix": "weighted",
    "synthesize.tasks_per_image": SAMPLES_PER_IMAGE,
    "synthesize.max_new_tokens": MAX_NEW_TOKENS,
    "synthesize.task_weights": TASK_WEIGHTS,
}


def _uniform(*parts: str) -> float:
    digest = hashlib.sha256("\0".join(parts).encode()).digest()
    return (int.from_bytes(digest[:8], "big") + 0.5) / 2**64


def new_tokens(task: str, key: str) -> int:
    """The deterministic number of new tokens the workload gives one sample (log-normal)."""
    u1, u2 = _uniform(task, key, "a"), _uniform(task, key, "b")
    normal = math.sqrt(-2 * math.log(u1)) * math.cos(2 * math.pi * u2)  # Box-Muller
    median = NEW_TOKENS_MEDIAN.get(task, 200)
    return max(8, min(MAX_NEW_TOKENS, int(median * math.exp(NEW_TOKENS_SIGMA * normal))))
