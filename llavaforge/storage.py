"""The few filesystem operations the guarantees rest on, for every fsspec filesystem.

- `write_atomic`: a reader sees the old file or the new one, never a part. Local disks: a
  temporary file in the same folder, then `os.replace` (synced first unless the file is
  scratch that no crash needs to survive). Object stores: one object PUT, which is atomic by
  itself.
- `create_exclusive`: create a file only if it does not exist; exactly one of two racing
  writers wins. Local disks: `os.link` of a complete temporary file (fails when the name
  exists). Object stores: fsspec's `mode="create"`, which gcsfs and s3fs send as a
  precondition (GCS `ifGenerationMatch=0`, S3 `If-None-Match: *`); a filesystem without such a
  precondition falls back to check-then-write, which `docs/architecture.md` names as the one
  place two processes could both believe they won.
"""

from __future__ import annotations

import json
import os
import uuid
from typing import Any, Optional

import fsspec
from fsspec.core import url_to_fs
from fsspec.implementations.local import LocalFileSystem


def join(prefix: str, *parts: str) -> str:
    return "/".join([prefix.rstrip("/"), *parts])


def is_local(fs) -> bool:
    return isinstance(fs, LocalFileSystem)


def _complete_temporary(path: str, data: bytes, durable: bool = True) -> str:
    """`data` written (and, when `durable`, synced) to a temporary file beside `path`; returns
    its name."""
    folder, name = os.path.split(path)
    os.makedirs(folder or ".", exist_ok=True)
    temporary = os.path.join(folder, f".{name}.tmp-{uuid.uuid4().hex[:12]}")
    with open(temporary, "wb") as f:
        f.write(data)
        if durable:
            f.flush()
            os.fsync(f.fileno())
    return temporary


def write_atomic(url: str, data: bytes, durable: bool = True) -> None:
    fs, path = url_to_fs(url)
    if is_local(fs):
        temporary = _complete_temporary(path, data, durable)
        try:
            os.replace(temporary, path)
        except OSError:
            os.unlink(temporary)
            raise
    else:
        fs.pipe_file(path, data)


def create_exclusive(url: str, data: bytes) -> bool:
    """Write `data` at `url` unless a file is already there; True when this call created it."""
    fs, path = url_to_fs(url)
    if is_local(fs):
        temporary = _complete_temporary(path, data)
        try:
            os.link(temporary, path)
        except FileExistsError:
            return False
        finally:
            os.unlink(temporary)
        return True
    try:
        fs.pipe_file(path, data, mode="create")
    except FileExistsError:
        return False
    return True


def json_bytes(data: Any) -> bytes:
    return json.dumps(data, indent=2, sort_keys=True).encode()


def read_json(url: str) -> Optional[Any]:
    """The parsed JSON file at `url`, or None when there is none."""
    try:
        with fsspec.open(url, "rb") as f:
            return json.loads(f.read())
    except FileNotFoundError:
        return None


def read_bytes(url: str) -> bytes:
    with fsspec.open(url, "rb") as f:
        return f.read()
