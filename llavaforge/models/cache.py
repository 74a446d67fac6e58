"""Where built or converted model files are kept between runs (never in the repo)."""

from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "LLAVAFORGE_CACHE"


def cache_dir(*parts: str) -> Path:
    """`$LLAVAFORGE_CACHE` or `~/.cache/llavaforge`, joined with `parts`, created."""
    root = Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "llavaforge")
    path = root.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path
