"""The dataset card (`PREFIX/README.md`) that makes an output prefix a Hugging Face dataset
folder: `datasets.load_dataset(PREFIX)` loads the published samples with decoded images, and
the Hub's viewer shows them.

Its YAML header names the data files of the published run folder(s) and declares the samples'
features, so the `image` column (`{bytes, path}`) is an `Image` feature, not a plain struct.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import yaml

from llavaforge.schemas.tables import IMAGE_STRUCT, SAMPLES_SCHEMA

_DTYPES = {pa.string(): "string", pa.int32(): "int32", pa.int64(): "int64", pa.float32(): "float32",
           pa.bool_(): "bool", pa.binary(): "binary"}


def _feature(name: str, arrow_type: pa.DataType) -> dict[str, Any]:
    """One column in the card's YAML feature layout (name + dtype | list | struct)."""
    if arrow_type == IMAGE_STRUCT:
        return {"name": name, "dtype": "image"}
    if pa.types.is_list(arrow_type):
        inner = arrow_type.value_type
        if pa.types.is_struct(inner):
            return {"name": name, "list": [_feature(f.name, f.type) for f in inner]}
        return {"name": name, "list": _DTYPES[inner]}
    if pa.types.is_struct(arrow_type):
        return {"name": name, "struct": [_feature(f.name, f.type) for f in arrow_type]}
    return {"name": name, "dtype": _DTYPES[arrow_type]}


def samples_features() -> list[dict[str, Any]]:
    return [_feature(field.name, field.type) for field in SAMPLES_SCHEMA]


def dataset_card(samples: list[str], review: list[str], title: str) -> str:
    """README.md for a prefix whose published samples are the Parquet files matching
    `samples` (globs relative to the prefix) and whose held-back samples match `review`."""
    configs = [{"config_name": "default", "data_files": [{"split": "train", "path": samples}], "default": True}]
    infos = [{"config_name": "default", "features": samples_features()}]
    if review:
        configs.append({"config_name": "review", "data_files": [{"split": "train", "path": review}]})
        infos.append({"config_name": "review", "features": samples_features()})
    header = yaml.safe_dump({"configs": configs, "dataset_info": infos}, sort_keys=False, width=120)
    return (f"---\n{header}---\n\n# {title}\n\n"
            "Visual-instruction data written by llavaforge: one row per (image, task) with LLaVA's fields "
            "(`id`, `image`, `conversations`), the image's annotations and provenance. The `default` "
            "configuration holds the published samples; `review` (when present) the samples a check flagged.\n\n"
            "```python\nimport datasets\nds = datasets.load_dataset(PREFIX, split=\"train\")  # ds[0][\"image\"] is a "
            "PIL image\n```\n\nThis file is rewritten by llavaforge each time a run is published.\n")
