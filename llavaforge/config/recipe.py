"""The recipe: one typed, validated description of what a run computes (YAML file + CLI
overrides), with its preset merged in.

Loaded once, at the start: the preset's fields are filled in under the fields the recipe wrote,
the whole is validated (an error names the field path and the bad value), and the hash is
computed over the resolved values and the prompt files, so anything that changes outputs
changes the hash. Stages receive only their own section.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Optional

import fsspec
import yaml
from pydantic import Field, PrivateAttr, ValidationError, field_validator, model_validator

from llavaforge.config.annotate import AnnotateConfig
from llavaforge.config.base import StrictModel
from llavaforge.config.check import CheckConfig
from llavaforge.config.presets import PRESET_NAMES, merge_preset
from llavaforge.config.prompts import file_fingerprint, files_fingerprint, prompt_files, vision_prompt_path
from llavaforge.config.sections import DecodeConfig, DedupConfig, ReadConfig, WriteConfig
from llavaforge.config.synthesize import SynthesizeConfig
from llavaforge.config.verify import VerifyConfig
from llavaforge.errors import UsageError


class RecipeError(UsageError):
    """A recipe or override that does not validate; the message names the field."""


class Recipe(StrictModel):
    preset: Optional[str] = Field(
        default=None, description="Model preset: tiny, offline or hub (see `llavaforge models`).")
    seed: int = Field(default=0, description="Seed for every random choice (task mix, sampling).")
    read: ReadConfig = Field(default_factory=ReadConfig)
    decode: DecodeConfig = Field(default_factory=DecodeConfig)
    dedup: DedupConfig = Field(default_factory=DedupConfig)
    annotate: AnnotateConfig = Field(default_factory=AnnotateConfig)
    synthesize: SynthesizeConfig = Field(default_factory=SynthesizeConfig)
    check: CheckConfig = Field(default_factory=CheckConfig)
    verify: VerifyConfig = Field(default_factory=VerifyConfig,
                                 description="A vision-language model judging each generated answer against the image.")
    write: WriteConfig = Field(default_factory=WriteConfig)

    _hash: Optional[str] = PrivateAttr(default=None)

    @model_validator(mode="before")
    @classmethod
    def _merge_preset(cls, data: Any) -> Any:
        return merge_preset(data) if isinstance(data, dict) else data

    @field_validator("preset")
    @classmethod
    def _known_preset(cls, v: Optional[str]) -> Optional[str]:
        if v is not None and v not in PRESET_NAMES:
            raise ValueError(f"unknown preset {v!r}; known: {', '.join(PRESET_NAMES)}")
        return v

    def hash(self) -> str:
        """Stable over field order and formatting: what the run computes, not how it was
        written. Covers the preset-filled values and the prompt files, so editing a preset or a
        prompt is a recipe change. Computed once per recipe."""
        if self._hash is None:
            try:
                prompts = files_fingerprint(prompt_files(self.synthesize.prompts_dir))
            except OSError as e:
                raise RecipeError(f"recipe field `synthesize.prompts_dir`: {e}") from e
            content = {"recipe": self.model_dump(mode="json"), "prompts": prompts}
            vision = self._vision_prompt_fingerprints()
            if vision:  # a VLM prompt file counts only in recipes whose role reads it
                content["vision_prompts"] = vision
            canonical = json.dumps(content, sort_keys=True, separators=(",", ":"))
            self._hash = hashlib.sha256(canonical.encode()).hexdigest()[:16]
        return self._hash

    def vision_prompt_files(self) -> dict[str, tuple[str, Any]]:
        """The prompt file of each VLM role that runs: kind -> (recipe field, path)."""
        files = {}
        if self.annotate.dense_captioner is not None and self.annotate.dense_captioner.enabled:
            files["dense_caption"] = ("annotate.dense_captioner.prompt_file",
                                      vision_prompt_path("dense_caption", self.annotate.dense_captioner.prompt_file))
        if self.verify.enabled and self.synthesize.enabled:
            files["verify"] = ("verify.prompt_file", vision_prompt_path("verify", self.verify.prompt_file))
        return files

    def _vision_prompt_fingerprints(self) -> dict[str, str]:
        fingerprints = {}
        for kind, (field, path) in self.vision_prompt_files().items():
            try:
                fingerprints[kind] = file_fingerprint(path)
            except OSError as e:
                raise RecipeError(f"recipe field `{field}`: cannot read prompt file {path}: {e}") from e
        return fingerprints


def _format_validation_error(err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        path = ".".join(str(p) for p in e["loc"]) or "(recipe)"
        value = e.get("input")
        shown = "" if isinstance(value, dict) else f" (got {value!r})"
        lines.append(f"recipe field `{path}`: {e['msg']}{shown}")
    return "\n".join(lines)


def _set_path(data: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = data
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise RecipeError(f"recipe field `{dotted}`: `{part}` is not a section")
        node = child
    node[parts[-1]] = value


def parse_override(text: str) -> tuple[str, Any]:
    """`decode.min_side=64` -> ("decode.min_side", 64); values are parsed as YAML."""
    if "=" not in text:
        raise RecipeError(f"override {text!r} is not FIELD=VALUE")
    path, raw = text.split("=", 1)
    if not path.strip():
        raise RecipeError(f"override {text!r} has no field name")
    return path.strip(), yaml.safe_load(raw) if raw.strip() else None


def load_recipe(path: Optional[str] = None, overrides: Optional[dict[str, Any]] = None) -> Recipe:
    """Read a YAML recipe (any fsspec URL), apply dotted overrides, merge the preset, validate
    once; the result is the resolved recipe a run uses."""
    data: dict[str, Any] = {}
    if path:
        try:
            with fsspec.open(path, "r") as f:
                loaded = yaml.safe_load(f)
        except FileNotFoundError as e:
            raise RecipeError(f"recipe file not found: {path}") from e
        except yaml.YAMLError as e:
            raise RecipeError(f"recipe {path} is not valid YAML: {e}") from e
        if loaded is not None and not isinstance(loaded, dict):
            raise RecipeError(f"recipe {path} must be a mapping of sections, got {type(loaded).__name__}")
        data = loaded or {}
    for dotted, value in (overrides or {}).items():
        _set_path(data, dotted, value)
    try:
        recipe = Recipe.model_validate(data)
    except ValidationError as e:
        raise RecipeError(_format_validation_error(e)) from e
    recipe.hash()  # a missing prompt folder is a recipe error now, not on a worker
    return recipe


def recipe_reference() -> str:
    """Every recipe field with its default and description, as commented YAML."""
    lines: list[str] = []

    def walk(model: type[StrictModel], defaults: dict[str, Any], indent: int) -> None:
        pad = "  " * indent
        for name, info in model.model_fields.items():
            annotation = info.annotation
            if info.description:
                lines.append(f"{pad}# {info.description}")
            if isinstance(annotation, type) and issubclass(annotation, StrictModel):
                lines.append(f"{pad}{name}:")
                walk(annotation, defaults[name], indent + 1)
            else:
                lines.append(f"{pad}{name}: {json.dumps(defaults[name])}")

    walk(Recipe, Recipe().model_dump(mode="json"), 0)
    return "\n".join(lines) + "\n"
