"""Which prompt files a run uses, and their fingerprint (part of the recipe hash).

Kept here, below the prompt library, so that the recipe can hash the files without loading
(or importing) the library: any edit of a prompt file is a recipe change.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Optional

PACKAGED_PROMPTS = Path(__file__).resolve().parent.parent / "prompts" / "library"


def prompt_folder(folder: Optional[str]) -> Path:
    return Path(folder) if folder else PACKAGED_PROMPTS


def prompt_files(folder: Optional[str]) -> dict[Path, bytes]:
    """Every `*.yaml` in the folder (default: the packaged library), by path, in name order."""
    root = prompt_folder(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"prompt folder {root} does not exist")
    return {p: p.read_bytes() for p in sorted(root.glob("*.yaml"))}


def files_fingerprint(files: dict[Path, bytes]) -> str:
    """A hash of file names and contents: any edit, addition or removal changes it."""
    whole = hashlib.sha256()
    for path, data in files.items():
        whole.update(path.name.encode() + b"\0" + hashlib.sha256(data).hexdigest().encode() + b"\0")
    return whole.hexdigest()[:16]


PACKAGED_VISION_PROMPTS = Path(__file__).resolve().parent.parent / "prompts" / "vision"


def vision_prompt_path(kind: str, override: Optional[str]) -> Path:
    """The prompt file of a vision-language model role (`dense_caption`, `verify`): the recipe's
    own file, else the packaged one."""
    return Path(override) if override else PACKAGED_VISION_PROMPTS / f"{kind}.yaml"


def file_fingerprint(path: Path) -> str:
    """A hash of one prompt file's content (raises OSError when it cannot be read)."""
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]
