"""The recipe: one typed, validated description of a run (YAML file + CLI overrides).

Validated once, at the start; an error names the field path and the bad value.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Optional

import fsspec
import yaml
from pydantic import Field, ValidationError, field_validator

from llavaforge.models.config import AnnotateConfig
from llavaforge.models.llm.config import SynthesizeConfig
from llavaforge.schemas.config import StrictModel
from llavaforge.transforms.check_config import CheckConfig

PRESET_NAMES = ("tiny", "offline", "hub")
IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp", "bmp", "gif", "tif", "tiff")


class RecipeError(ValueError):
    """A recipe or override that does not validate; the message names the field."""


class ReadConfig(StrictModel):
    image_extensions: list[str] = Field(
        default=list(IMAGE_EXTENSIONS),
        description="Member/file extensions read as images (tar shards and folders).")
    text_extensions: list[str] = Field(
        default=["txt", "caption"],
        description="Sibling members/files kept as source text (alt text, captions).")
    metadata_extension: str = Field(
        default="json", description="Sibling member/file kept verbatim as source metadata.")
    image_column: str = Field(
        default="image",
        description="Parquet column holding the image: raw bytes, or a struct with "
                    "`bytes`/`path` (the Hugging Face datasets layout).")
    text_column: Optional[str] = Field(
        default=None, description="Parquet column with source text (caption, alt text).")
    url_column: Optional[str] = Field(
        default=None, description="Parquet column with the image's original URL (kept as metadata).")
    id_column: Optional[str] = Field(
        default=None, description="Parquet column used as the source member name (else `row N`).")
    parquet_batch_rows: int = Field(
        default=64, ge=1,
        description="Rows converted to Python at a time; Parquet shards are read one row group at a "
                    "time, so memory is bounded by the writer's row group size.")

    @field_validator("image_extensions", "text_extensions")
    @classmethod
    def _lower_no_dot(cls, v: list[str]) -> list[str]:
        return [e.lower().lstrip(".") for e in v]


class DecodeConfig(StrictModel):
    max_pixels: int = Field(
        default=64_000_000, ge=1,
        description="Images with more pixels are rejected as decompression bombs before decoding.")
    min_side: int = Field(default=32, ge=1, description="Images with a shorter side are rejected.")
    max_aspect_ratio: float = Field(
        default=10.0, ge=1.0, description="Images with long side / short side above this are rejected.")
    reencode_format: str = Field(
        default="png",
        description="Format for images whose original bytes are not kept (not JPEG/PNG/WebP, "
                    "EXIF-rotated, or a mode training loaders misread): png or jpg.")

    @field_validator("reencode_format")
    @classmethod
    def _known_format(cls, v: str) -> str:
        if v not in ("png", "jpg"):
            raise ValueError("must be 'png' or 'jpg'")
        return v


class NearDuplicateConfig(StrictModel):
    enabled: bool = Field(default=False, description="Drop near-duplicate images by perceptual hash.")
    max_distance: int = Field(
        default=6, ge=0, le=32, description="Largest Hamming distance between 64-bit pHashes that counts as a near-duplicate.")


class DedupConfig(StrictModel):
    near: NearDuplicateConfig = Field(default_factory=NearDuplicateConfig)


class WriteConfig(StrictModel):
    images_per_shard: int = Field(
        default=1000, ge=1,
        description="Target images per output shard (samples/, wds/, llava/); shards are "
                    "filled by key hash, so sizes vary around this.")
    rejects_per_shard: int = Field(default=100_000, ge=1, description="Target rows per rejects shard.")


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
    write: WriteConfig = Field(default_factory=WriteConfig)

    @field_validator("preset")
    @classmethod
    def _known_preset(cls, v: Optional[str]) -> Optional[str]:
        if v is not None and v not in PRESET_NAMES:
            raise ValueError(f"unknown preset; known: {', '.join(PRESET_NAMES)}")
        return v

    def hash(self) -> str:
        """Stable over field order and formatting: what the run computes, not how it was
        written. The prompt files are part of it, so editing a prompt is a recipe change."""
        from llavaforge.prompts.library import PromptError, prompt_library_fingerprint

        try:
            prompts = prompt_library_fingerprint(self.synthesize.prompts_dir)
        except PromptError as e:
            raise RecipeError(f"recipe field `synthesize.prompts_dir`: {e}") from e
        content = {"recipe": self.model_dump(mode="json"), "prompts": prompts}
        canonical = json.dumps(content, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]


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
    """Read a YAML recipe (any fsspec URL), apply dotted overrides, validate once."""
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
        return Recipe.model_validate(data)
    except ValidationError as e:
        raise RecipeError(_format_validation_error(e)) from e


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
