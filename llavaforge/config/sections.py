"""Recipe sections of the stages without models: read, decode, dedup, write."""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import Field, field_validator

from llavaforge.config.base import StrictModel

IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp", "bmp", "gif", "tif", "tiff")
MIB = 1024 * 1024


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
    max_member_bytes: int = Field(
        default=256 * MIB, ge=1,
        description="Largest image a tar member, file or Parquet path cell may hold, in bytes; a larger "
                    "one becomes a `member_too_large` reject without being read.")
    allowed_path_prefixes: list[str] = Field(
        default_factory=list,
        description="Where Parquet path cells may point besides the shard's own folder: URL or absolute "
                    "path prefixes such as `gs://bucket/images/`. Empty: only inside the shard's folder.")

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
        description="Format for images whose original bytes are not kept (not JPEG/PNG/WebP, EXIF-rotated, "
                    "or bytes a training loader's convert('RGB') would render differently, e.g. alpha): png keeps "
                    "the canonical pixels exactly; jpg is smaller, and models and trainers both see its pixels.")

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
    flagged: Literal["review", "include"] = Field(
        default="review",
        description="Samples a check flagged (severity `flag`): review = kept out of the training formats "
                    "(samples/, wds/, llava/) and written to review/ with their flags; include = written to every "
                    "format with a `flags` field trainers can filter on.")
    llava_single_file: bool = Field(
        default=True,
        description="Also write llava.json: every LLaVA record of the run in one file, what LLaVA's --data_path "
                    "takes (with dataset_info.json for LLaMA-Factory beside it).")
    images_per_shard: int = Field(
        default=1000, ge=1,
        description="Target images per output shard (samples/, wds/, llava/); shards are "
                    "filled by key hash, so sizes vary around this.")
    rejects_per_shard: int = Field(default=100_000, ge=1, description="Target rows per rejects shard.")
