"""Device stand-ins, for benchmarks only (never a preset, never in outputs): each model role is
replaced by a handler that takes the per-batch time measured on one H100 (docs/performance.md)
by sleeping (so it holds no GIL, like a GPU kernel) and returns outputs of realistic size. So a
CPU machine can measure whether the pipeline keeps a device busy. Every figure made with them
is SIMULATED.

Each stand-in appends its busy intervals to `$STANDIN_LOG_DIR/<pid>.jsonl`.
"""

from __future__ import annotations

import fcntl
import json
import os
import random
import time
from typing import Any, Optional, Sequence

from apache_beam.ml.inference.base import ModelHandler, PredictionResult

from llavaforge.models.llm.base import Generation, LlmHandler, LlmRequest
from llavaforge.schemas.record import Caption, DetectedObject, ImageRecord, Tag

import workload

# Items per second on one H100 (docs/performance.md, issue-7 run; bf16). The captioner is the
# BLIP-base shape with llavaforge's static decoding loop at batch 256 (hub uses BLIP-large:
# slower, so this flatters the vision side). GPU JPEG decode (nvjpeg, 7,537 img/s) is added to
# every vision role, as each decodes its own batch.
VISION_ITEMS_PER_S = {"captioner": 850.0, "detector": 514.0, "tagger": 7010.0}
JPEG_DECODE_PER_S = 7537.0
# 7B LLM, llavaforge's static loop: 9,745 new tok/s at batch 256 = 26.3 ms per decoding step.
# Smaller batches: assumed half memory-bound floor, half proportional (only 256 was measured).
LLM_STEP_S_AT_256 = 256 / 9745.0
LLM_PREFILL_TOKENS_PER_S = 40_000.0  # assumed; only each row's own ~300 tokens are prefilled


def llm_step_seconds(rows: int) -> float:
    return LLM_STEP_S_AT_256 * (0.5 + 0.5 * rows / 256)


def llm_batch_seconds(lengths: Sequence[int]) -> float:
    rows = len(lengths)
    own = workload.PROMPT_TOKENS - workload.SHARED_PREFIX_TOKENS
    return rows * own / LLM_PREFILL_TOKENS_PER_S + max(lengths) * llm_step_seconds(rows)


# Scaling runs measure the pipeline's own cost as work grows: they divide device time by this.
SPEEDUP = float(os.environ.get("STANDIN_SPEEDUP", "1"))
# Share of conversations whose first question is one shared sentence (question dedup has work).
REPEATED_QUESTION_SHARE = 0.1


def _busy(role: str, seconds: float, items: int) -> None:
    """Hold the one device of this machine for `seconds` (an exclusive file lock across the
    worker processes, as they would share one GPU), and log the interval."""
    seconds /= SPEEDUP
    folder = os.environ.get("STANDIN_LOG_DIR")
    if not folder:
        time.sleep(seconds)
        return
    with open(os.path.join(folder, "device.lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        start = time.time()
        time.sleep(seconds)
        end = time.time()
        fcntl.flock(lock, fcntl.LOCK_UN)
    with open(os.path.join(folder, f"{os.getpid()}.jsonl"), "a") as f:
        f.write(json.dumps({"role": role, "start": start, "end": end, "items": items}) + "\n")


class _Device:
    """What a stand-in's load_model returns (Beam's Shared holds models by weak reference)."""

    def __init__(self, role: str) -> None:
        self.role = role


class StandInVision(ModelHandler):
    def __init__(self, role: str, config: Any) -> None:
        super().__init__(min_batch_size=config.min_batch_size, max_batch_size=config.max_batch_size)
        self.role = role

    def load_model(self) -> _Device:
        return _Device(self.role)

    def run_inference(self, batch: Sequence[ImageRecord], model: Any,
                      inference_args: Optional[dict] = None) -> list[PredictionResult]:
        n = len(batch)
        _busy(self.role, n / VISION_ITEMS_PER_S[self.role] + n / JPEG_DECODE_PER_S, n)
        made = {"captioner": [Caption("a calm scene in soft light", "stand-in")],
                "detector": [DetectedObject("person", 0.9, [0.1, 0.1, 0.5, 0.9], "stand-in")],
                "tagger": [Tag("outdoor", 0.8, "stand-in")]}[self.role]
        return [PredictionResult(record, made, "stand-in") for record in batch]

    def get_metrics_namespace(self) -> str:
        return f"annotate_{self.role}"


_WORDS = ("calm quiet soft bright gentle warm cool pale deep clear open wide narrow steady slow light shadow "
          "colour tone texture surface edge line shape pattern balance frame space distance mood air").split()


def filler(tokens: int, seed: int) -> str:
    """About `tokens` tokens of varied sentences (no object words, no loops): ~0.75 words a token."""
    rng = random.Random(seed)
    words, sentences = int(tokens * 0.75), []
    while words > 0:
        n = min(words, rng.randint(8, 16))
        sentences.append(" ".join(rng.choice(_WORDS) for _ in range(n)).capitalize() + ".")
        words -= n
    return " ".join(sentences)


class StandInLlm(LlmHandler):
    backend = "standin"
    thread_safe = False

    def load(self) -> _Device:
        return _Device("llm")

    def generate(self, model: Any, requests: Sequence[LlmRequest]) -> list[Generation]:
        lengths = [workload.new_tokens(r.tag.task, r.tag.key) for r in requests]
        _busy("llm", llm_batch_seconds(lengths), len(requests))
        out = []
        for request, length in zip(requests, lengths):
            body = filler(length, request.seed)
            rng = random.Random(request.seed)
            question = ("What is the mood of this picture?" if rng.random() < REPEATED_QUESTION_SHARE else
                        f"What makes the {rng.choice(_WORDS)} {rng.choice(_WORDS)} of this view {rng.choice(_WORDS)}?")
            text = body if request.tag.format == "answer" else f"Question: {question}\nAnswer: {body}"
            out.append(Generation(text=text, tokens_in=workload.PROMPT_TOKENS, tokens_out=length))
        return out
