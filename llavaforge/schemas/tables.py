"""Arrow schemas of the output tables (samples, rejects) and the rows that fill them."""

from __future__ import annotations

import dataclasses
from typing import Any

import pyarrow as pa

from llavaforge.schemas.layout import image_name
from llavaforge.schemas.llava import sample_id, turns_to_json
from llavaforge.schemas.record import ImageRecord, Reject

_BOX = pa.list_(pa.float32())
# Hugging Face datasets' image layout: `datasets.Image()` decodes the bytes; `path` is the
# image's file name in the run folder's images/ (LLaVA's `image` field).
IMAGE_STRUCT = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
_TURNS = pa.list_(pa.struct([("from", pa.string()), ("value", pa.string())]))

SAMPLES_SCHEMA = pa.schema([
    # LLaVA fields
    ("id", pa.string()),
    ("image", IMAGE_STRUCT),
    ("conversations", _TURNS),
    # the image
    ("key", pa.string()),
    ("task", pa.string()),
    ("image_format", pa.string()),
    ("width", pa.int32()),
    ("height", pa.int32()),
    ("sha256", pa.string()),  # of the image bytes written (`image.bytes`, images/<path>)
    ("source_sha256", pa.string()),  # of the input bytes (the key derives from it)
    ("phash", pa.string()),
    # the source
    ("source_url", pa.string()),
    ("source_member", pa.string()),
    ("source_texts", pa.list_(pa.string())),
    ("source_metadata", pa.string()),
    # annotations
    ("captions", pa.list_(pa.struct([("text", pa.string()), ("model", pa.string())]))),
    ("objects", pa.list_(pa.struct([("label", pa.string()), ("score", pa.float32()),
                                    ("box", _BOX), ("model", pa.string())]))),
    ("tags", pa.list_(pa.struct([("label", pa.string()), ("score", pa.float32()),
                                 ("model", pa.string())]))),
    ("ocr", pa.list_(pa.struct([("text", pa.string()), ("score", pa.float32()),
                                ("box", _BOX), ("model", pa.string())]))),
    # how the conversation was generated
    ("backend", pa.string()),
    ("model", pa.string()),
    ("prompt_version", pa.string()),
    ("tokens_in", pa.int32()),
    ("tokens_out", pa.int32()),
    ("seed", pa.int64()),
    ("flags", pa.list_(pa.string())),
    # provenance
    ("llavaforge_version", pa.string()),
    ("recipe_hash", pa.string()),
    ("run_id", pa.string()),
])

REJECTS_SCHEMA = pa.schema([
    ("key", pa.string()),
    ("source_url", pa.string()),
    ("source_member", pa.string()),
    ("stage", pa.string()),
    ("reason", pa.string()),
    ("detail", pa.string()),
    ("task", pa.string()),
    ("retryable", pa.bool_()),
])


def sample_rows(record: ImageRecord) -> list[dict[str, Any]]:
    """The samples-table rows of one image: one per conversation, or one with task null
    when the image has no conversations."""
    a = record.annotations
    p = record.provenance
    common = {
        "image": {"bytes": record.image.data, "path": image_name(record.key, record.image.format)},
        "key": record.key,
        "image_format": record.image.format,
        "width": record.image.width,
        "height": record.image.height,
        "sha256": record.image.sha256,
        "source_sha256": record.image.source_sha256,
        "phash": record.image.phash,
        "source_url": record.source.url,
        "source_member": record.source.member,
        "source_texts": list(record.source.texts),
        "source_metadata": record.source.metadata,
        "captions": [dataclasses.asdict(c) for c in a.captions],
        "objects": [dataclasses.asdict(o) for o in a.objects],
        "tags": [dataclasses.asdict(t) for t in a.tags],
        "ocr": [dataclasses.asdict(o) for o in a.ocr],
        "llavaforge_version": p.version if p else None,
        "recipe_hash": p.recipe_hash if p else None,
        "run_id": p.run_id if p else None,
    }
    if not record.conversations:
        return [{**common, "id": sample_id(record.key, None), "task": None, "conversations": [],
                 "backend": None, "model": None, "prompt_version": None, "tokens_in": None,
                 "tokens_out": None, "seed": None, "flags": []}]
    return [
        {**common, "id": sample_id(record.key, c.task), "task": c.task,
         "conversations": turns_to_json(c.turns), "backend": c.backend, "model": c.model,
         "prompt_version": c.prompt_version, "tokens_in": c.tokens_in,
         "tokens_out": c.tokens_out, "seed": c.seed, "flags": list(c.flags)}
        for c in record.conversations
    ]


REJECT_COLUMNS = tuple(REJECTS_SCHEMA.names)


def reject_row(reject: Reject) -> dict[str, Any]:
    return {name: getattr(reject, name) for name in REJECT_COLUMNS}


def to_table(rows: list[dict[str, Any]], schema: pa.Schema) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=schema)
