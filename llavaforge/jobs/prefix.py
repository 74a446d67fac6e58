"""The output prefix a job writes: whether llavaforge may write there, and which run
folders in it are published, incomplete or superseded.

Rules (checked before anything is touched):
- the output is not a file, and neither contains nor lies inside any input;
- the prefix is missing, empty, or carries llavaforge's marker for the same kind of job (a
  `run` prefix holds one published output, a `nightly` prefix a history of runs);
- llavaforge deletes only run folders of its own (named `run-ID` / `dt=DATE/run-ID`) that the
  ledger does not publish, and in them only the files a run writes (`layout.is_run_file`),
  and the image bytes its runs stage (`_staging/run-ID/`, `layout.is_staged_file`): anything
  else in the prefix is never touched.
"""

from __future__ import annotations

import fnmatch
import logging
import posixpath
import time
from dataclasses import dataclass
from typing import Any, Iterable, Optional

from fsspec.core import url_to_fs

from llavaforge import __version__
from llavaforge.errors import UsageError
from llavaforge.schemas.layout import (PREFIX_MARKER, PROGRESS_DIR, RUN_FOLDER_PATTERNS, STAGING_DIR, is_progress_file,
                                       is_run_file, is_staged_file, progress_folder, run_id_of_folder, staging_folder)
from llavaforge.storage import create_exclusive, join, json_bytes, read_json

log = logging.getLogger(__name__)
KINDS = ("run", "nightly")
_GLOB_CHARS = set("*?[")


class OutputError(UsageError):
    """An output prefix llavaforge may not write to; the message says why (exit 2)."""


@dataclass(frozen=True)
class OutputPrefix:
    url: str
    fs: Any
    root: str

    @classmethod
    def of(cls, url: str) -> "OutputPrefix":
        fs, root = url_to_fs(url)
        return cls(url.rstrip("/"), fs, root.rstrip("/"))

    def url_of(self, relative: str) -> str:
        return join(self.url, relative)

    def path_of(self, relative: str) -> str:
        return join(self.root, relative)

    @property
    def canonical(self) -> str:
        return self.fs.unstrip_protocol(self.root)

    def marker(self) -> Optional[dict[str, Any]]:
        return read_json(self.url_of(PREFIX_MARKER))

    def check_writable(self, kind: str, inputs: Iterable[str], shard_urls: Iterable[str]) -> None:
        """Raise OutputError unless a `kind` job may write here (see the module doc)."""
        if self.fs.isfile(self.root):
            raise OutputError(f"output {self.url} is a file; give a folder or prefix")
        overlap = overlapping_input(self, inputs, shard_urls)
        if overlap:
            raise OutputError(f"output {self.url} overlaps the input {overlap}: a run never writes into "
                              f"what it reads; choose an output outside every input")
        marker = self.marker()
        if marker is not None:
            if marker.get("kind") != kind:
                raise OutputError(f"output {self.url} holds llavaforge `{marker.get('kind')}` output; a `{kind}` "
                                  f"cannot write there (use another prefix)")
            return
        if self.fs.exists(self.root) and self.fs.ls(self.root, detail=False):
            raise OutputError(f"output {self.url} is not empty and was not written by llavaforge (no "
                              f"{PREFIX_MARKER}); llavaforge writes only into an empty or new prefix, or one "
                              f"it owns")

    def claim(self, kind: str) -> None:
        """Mark the prefix as llavaforge's (idempotent; two racing claims agree or fail)."""
        document = {"kind": kind, "created_by": f"llavaforge {__version__}",
                    "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        self.fs.makedirs(self.root, exist_ok=True)
        if not create_exclusive(self.url_of(PREFIX_MARKER), json_bytes(document)):
            marker = self.marker() or {}
            if marker.get("kind") != kind:
                raise OutputError(f"output {self.url} was just claimed by a `{marker.get('kind')}` job")

    def run_folders(self) -> list[str]:
        """Every run folder under the prefix, relative, sorted."""
        found = set()
        for pattern in RUN_FOLDER_PATTERNS:
            for path in self.fs.glob(self.path_of(pattern)):
                relative = posixpath.relpath(path, self.root)
                if run_id_of_folder(relative) and self.fs.isdir(path):
                    found.add(relative)
        return sorted(found)

    def remove_run_folder(self, relative: str) -> list[str]:
        """Delete the files llavaforge writes in one run folder, then empty folders; returns
        what was left because llavaforge did not write it."""
        if run_id_of_folder(relative) is None:
            raise ValueError(f"{relative!r} is not a run folder")
        folder = self.path_of(relative)
        left = []
        for path in sorted(self.fs.find(folder)):
            inside = posixpath.relpath(path, folder)
            if is_run_file(inside):
                self.fs.rm_file(path)
            else:
                left.append(inside)
        if left:
            log.warning("left %d file(s) llavaforge did not write in %s: %s", len(left), folder, left[:5])
        _remove_empty_dirs(self.fs, folder)
        return left

    def remove_staging(self, run_id: Optional[str] = None) -> None:
        """Delete the image bytes staged by one run (by every run when None: only with the
        prefix's lease held, when no run is going on); only files llavaforge stages."""
        pattern = staging_folder(run_id or "*")
        for folder in self.fs.glob(self.path_of(pattern)):
            for path in self.fs.find(folder):
                if is_staged_file(posixpath.basename(path)):
                    self.fs.rm_file(path)
        _remove_empty_dirs(self.fs, self.path_of(STAGING_DIR))

    def remove_progress(self, run_id: Optional[str] = None) -> None:
        """Delete the live-progress files of one run once it is over (of every run when None:
        a crashed run's), then the folders left empty; only files llavaforge writes there."""
        for path in self.fs.glob(self.path_of(f"{progress_folder(run_id or '*')}/*.json")):
            if is_progress_file(posixpath.basename(path)):
                self.fs.rm_file(path)
        _remove_empty_dirs(self.fs, self.path_of(PROGRESS_DIR))


def _remove_empty_dirs(fs, folder: str) -> None:
    if not fs.exists(folder):
        return
    for path in sorted(fs.find(folder, withdirs=True), key=len, reverse=True):
        if fs.isdir(path) and not fs.ls(path, detail=False):
            fs.rmdir(path)
    if fs.isdir(folder) and not fs.ls(folder, detail=False):
        fs.rmdir(folder)


def _canonical(url: str) -> str:
    """A URL or path with its protocol, so paths on different filesystems never compare equal."""
    fs, path = url_to_fs(url)
    return fs.unstrip_protocol(path.rstrip("/"))


def _within(inner: str, outer: str) -> bool:
    return inner == outer or inner.startswith(outer.rstrip("/") + "/")


def overlapping_input(prefix: OutputPrefix, inputs: Iterable[str], shard_urls: Iterable[str]) -> Optional[str]:
    """The first input that contains the output or lies inside it, else None: every matched
    shard, every literal input path, and every glob that the output itself would match."""
    out = prefix.canonical
    for url in shard_urls:
        shard = _canonical(url)
        if _within(shard, out) or _within(out, shard):
            return url
    for pattern in inputs:
        literal = _canonical(pattern)
        if _GLOB_CHARS & set(literal):
            if fnmatch.fnmatch(out, literal):
                return pattern
        elif _within(literal, out) or _within(out, literal):
            return pattern
    return None
