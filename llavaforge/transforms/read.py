"""ReadShards: input globs -> one element per shard -> raw samples, streamed.

Every path goes through fsspec (local, file://, memory://, gs://, s3://). Globs are matched
once at launch (so a pattern matching nothing is a usage error and nightly runs can diff
the list against the ledger); the shard list is then reshuffled so shards spread over
workers, and each shard is read as a stream, never whole.

Each kind of shard is one `ShardReader` (tar, Parquet, folder, single image file); a new kind
is one class added to `SHARD_READERS`. What a reader never does: read a member above
`read.max_member_bytes` (a `member_too_large` reject, the member skipped unread), follow a link
out of what it was given (tar link members, device files, FIFOs and directories are rejects
with their own reasons; a folder's symlink out of the folder is a `symlink_member` reject), or
read a Parquet path cell outside the shard's folder unless `read.allowed_path_prefixes`
names the place (`image_path_not_allowed`).
"""

from __future__ import annotations

import errno
import gzip
import json
import logging
import os
import posixpath
import tarfile
from typing import Iterable, Iterator, NamedTuple, Optional, Union

import apache_beam as beam
import fsspec
import pyarrow.parquet as pq
from fsspec.core import url_to_fs

from llavaforge.config.sections import ReadConfig
from llavaforge.errors import UsageError
from llavaforge.schemas.record import RawSample, Reject, Source, source_key
from llavaforge.schemas.wds import split_member_name
from llavaforge.storage import is_local
from llavaforge.transforms.base import StageFn, apply_stage_fn

log = logging.getLogger(__name__)

STAGE = "read"
_GLOB_CHARS = set("*?[")
# Tar member types that hold no file of their own, and the reason each becomes.
_SPECIAL_MEMBERS = ((tarfile.TarInfo.issym, "symlink_member"), (tarfile.TarInfo.islnk, "hardlink_member"),
                    (tarfile.TarInfo.isdir, "directory_member"), (tarfile.TarInfo.isfifo, "fifo_member"),
                    (tarfile.TarInfo.isdev, "device_member"))


class InputError(UsageError):
    """An input pattern that cannot be read (matches nothing, wrong Parquet columns)."""


class Member(NamedTuple):
    """A named piece of a shard: its bytes, or why it was not read (reason, detail)."""

    name: str
    data: Optional[bytes]
    problem: Optional[tuple[str, str]] = None


Output = Union[RawSample, Reject]


def shard_reject(url: str, reason: str, detail: str, retryable: bool = False) -> Reject:
    return Reject.of(source_key(url, ""), Source(url=url, member=""), STAGE, reason, detail, retryable=retryable)


def member_reject(url: str, name: str, reason: str, detail: str) -> Reject:
    return Reject.of(source_key(url, name), Source(url=url, member=name), STAGE, reason, detail)


def too_large(size: int, config: ReadConfig) -> Optional[tuple[str, str]]:
    if size > config.max_member_bytes:
        return ("member_too_large", f"{size} bytes > read.max_member_bytes {config.max_member_bytes}; not read")
    return None


# --- grouping members into samples (tar and folder shards) -------------------------------------

def group_members(members: Iterable[tuple[str, object]]) -> Iterator[tuple[str, dict[str, tuple[str, object]]]]:
    """Group consecutive members by key as WebDataset does (key = path up to the first dot
    of the basename: `schemas.wds.split_member_name`).

    Unlike webdataset's `group_by_keys`, a repeated extension within a key starts a new
    sample instead of raising, so a tar with duplicate names loses nothing.
    Yields (key, {extension: (member name, payload)}).
    """
    key, group = None, {}
    for name, payload in members:
        base, ext = split_member_name(name)
        if base is None:  # no extension at all
            base, ext = name, ""
        ext = ext.lower()
        if group and (base != key or ext in group):
            yield key, group
            group = {}
        key = base
        group[ext] = (name, payload)
    if group:
        yield key, group


def samples_from_group(url: str, group: dict[str, tuple[str, Member]], config: ReadConfig) -> Iterator[Output]:
    """One RawSample per image member of a group, siblings attached; an image member that was
    not read is a reject with its reason; a group with no image becomes a reject naming its
    members."""
    texts, metadata = [], None
    for ext, (name, member) in sorted(group.items()):
        if ext in config.text_extensions or ext == config.metadata_extension:
            if member.data is None:
                log.warning("%s: sibling %s not read (%s)", url, name, member.problem[1])
            elif ext == config.metadata_extension:
                metadata = member.data.decode("utf-8", errors="replace")
            else:
                texts.append(member.data.decode("utf-8", errors="replace").strip())
    texts = [t for t in texts if t]
    images = [(ext, name, member) for ext, (name, member) in sorted(group.items()) if ext in config.image_extensions]
    if not images:
        names = sorted(name for name, _ in group.values())
        yield member_reject(url, names[0], "no_image", f"no member with an image extension among {names}")
        return
    for ext, name, member in images:
        if member.data is None:
            yield member_reject(url, name, *member.problem)
        else:
            yield RawSample(source=Source(url=url, member=name, texts=texts, metadata=metadata),
                            data=member.data, extension=ext)


def read_grouped(url: str, members: Iterable[Member], config: ReadConfig) -> Iterator[Output]:
    """Members -> samples and rejects. A member that is no file (a link, a folder) is a reject
    of its own; the others are grouped. A shard that breaks mid-way still yields the sample
    being grouped when it broke (its members were read whole); the error is raised after it."""
    failures: list[Exception] = []
    specials: list[Reject] = []

    def files_until_failure() -> Iterator[tuple[str, Member]]:
        try:
            for member in members:
                if member.problem and member.problem[0] != "member_too_large":
                    specials.append(member_reject(url, member.name, *member.problem))
                else:
                    yield member.name, member
        except Exception as e:  # noqa: BLE001 -- re-raised below, after the flush
            failures.append(e)

    for _, group in group_members(files_until_failure()):
        yield from specials
        specials.clear()
        yield from samples_from_group(url, group, config)
    yield from specials
    if failures:
        raise failures[0]


# --- one reader per kind of shard ---------------------------------------------------------------

class ShardReader:
    """One kind of input shard: how to recognise it, and how to read it as a stream of raw
    samples and read rejects. Errors that break the whole shard are raised; the caller turns
    them into one shard reject after the samples already read."""

    kind = "shard"

    def matches(self, url: str, is_dir: bool, config: ReadConfig) -> bool:
        raise NotImplementedError

    def read(self, fs, url: str, path: str, config: ReadConfig) -> Iterator[Output]:
        raise NotImplementedError


class TarShard(ShardReader):
    """A WebDataset tar (`.tar`, `.tar.gz`, `.tgz`), streamed member by member (tarfile `r|*`)."""

    kind = "tar"
    suffixes = (".tar", ".tar.gz", ".tgz")

    def matches(self, url: str, is_dir: bool, config: ReadConfig) -> bool:
        return not is_dir and url.lower().endswith(self.suffixes)

    def read(self, fs, url: str, path: str, config: ReadConfig) -> Iterator[Output]:
        with fs.open(path, "rb") as f:
            yield from read_grouped(url, self.members(f, config), config)

    @staticmethod
    def members(fileobj, config: ReadConfig) -> Iterator[Member]:
        with tarfile.open(fileobj=fileobj, mode="r|*") as tar:
            for info in tar:
                special = next((reason for test, reason in _SPECIAL_MEMBERS if test(info)), None)
                if special:
                    target = f" -> {info.linkname}" if info.linkname else ""
                    yield Member(info.name, None, (special, f"tar member {info.name!r}{target} is not a regular file"))
                elif not info.isreg():
                    yield Member(info.name, None, ("special_member", f"tar member type {info.type!r} is not a file"))
                elif too_large(info.size, config):
                    # Not extracted: the stream skips its data in fixed-size blocks.
                    yield Member(info.name, None, too_large(info.size, config))
                else:
                    yield Member(info.name, tar.extractfile(info).read())


class FolderShard(ShardReader):
    """A folder of image files (recursive) with sibling text files, listed sorted so each key's
    files are consecutive, as in a tar; files are read one at a time as grouping asks."""

    kind = "folder"

    def matches(self, url: str, is_dir: bool, config: ReadConfig) -> bool:
        return is_dir

    def read(self, fs, url: str, path: str, config: ReadConfig) -> Iterator[Output]:
        yield from read_grouped(url, self.members(fs, path, config), config)

    @staticmethod
    def members(fs, root: str, config: ReadConfig) -> Iterator[Member]:
        real_root = os.path.realpath(root) if is_local(fs) else None
        for path, info in sorted(fs.find(root, detail=True).items()):
            name = posixpath.relpath(path, root)
            if real_root is not None and info.get("islink"):
                target = os.path.realpath(path)
                if not (target + os.sep).startswith(real_root + os.sep):
                    yield Member(name, None, ("symlink_member", f"{name} links to {target}, outside the input folder"))
                    continue
            problem = too_large(int(info.get("size") or 0), config)
            yield Member(name, None, problem) if problem else Member(name, fs.cat_file(path))


class ImageFileShard(ShardReader):
    """One image file matched directly by a glob, with its sibling text/metadata files."""

    kind = "file"

    def matches(self, url: str, is_dir: bool, config: ReadConfig) -> bool:
        return not is_dir and url.lower().rsplit(".", 1)[-1] in config.image_extensions

    def read(self, fs, url: str, path: str, config: ReadConfig) -> Iterator[Output]:
        base = path.rsplit(".", 1)[0]
        name = posixpath.basename(path)
        problem = too_large(int(fs.size(path) or 0), config)
        group = {name.rsplit(".", 1)[-1].lower(): (name, Member(name, None, problem) if problem
                                                   else Member(name, fs.cat_file(path)))}
        for ext in [*config.text_extensions, config.metadata_extension]:
            sibling = f"{base}.{ext}"
            if fs.exists(sibling):
                group[ext] = (posixpath.basename(sibling), Member(sibling, fs.cat_file(sibling)))
        yield from samples_from_group(posixpath.dirname(url) or url, group, config)


class ParquetShard(ShardReader):
    """A Parquet file, read one row group at a time (pyarrow's iter_batches reads ahead through
    the whole file, which streaming must avoid for image-heavy shards)."""

    kind = "parquet"
    suffixes = (".parquet", ".pq")

    def matches(self, url: str, is_dir: bool, config: ReadConfig) -> bool:
        return not is_dir and url.lower().endswith(self.suffixes)

    def read(self, fs, url: str, path: str, config: ReadConfig) -> Iterator[Output]:
        c = config
        with fs.open(path, "rb") as f:
            parquet = pq.ParquetFile(f)
            missing = missing_columns(parquet.schema_arrow.names, c)
            if missing:
                yield shard_reject(url, "missing_column", missing)
                return
            columns = list(dict.fromkeys(col for col in (c.image_column, c.text_column, c.url_column, c.id_column)
                                         if col))
            row = 0
            for group in range(parquet.num_row_groups):
                for batch in parquet.read_row_group(group, columns=columns).to_batches(c.parquet_batch_rows):
                    for item in batch.to_pylist():
                        yield self.row(fs, url, path, row, item, c)
                        row += 1

    @staticmethod
    def row(fs, url: str, path: str, row: int, item: dict, c: ReadConfig) -> Output:
        member = str(item[c.id_column]) if c.id_column and item.get(c.id_column) is not None else f"row {row}"
        text = item.get(c.text_column) if c.text_column else None
        metadata = json.dumps({"url": item.get(c.url_column)}) if c.url_column else None
        source = Source(url=url, member=member, texts=[text.strip()] if isinstance(text, str) and text.strip() else [],
                        metadata=metadata)
        cell = item.get(c.image_column)
        data, extension = cell, ""
        if isinstance(cell, dict):  # Hugging Face datasets: {"bytes": ..., "path": ...}
            data, image_path = cell.get("bytes"), cell.get("path")
            if data is None and image_path:
                extension = image_path.rsplit(".", 1)[-1].lower() if "." in image_path else ""
                try:
                    data = read_path_cell(fs, path, image_path, c)
                except PathNotAllowed as e:
                    return Reject.of(source_key(url, member), source, STAGE, "image_path_not_allowed", str(e))
                except MemberTooLarge as e:
                    return Reject.of(source_key(url, member), source, STAGE, "member_too_large", str(e))
                except Exception as e:  # noqa: BLE001 -- one unreadable path is one reject
                    return Reject.of(source_key(url, member), source, STAGE, "unreadable_image_path",
                                     f"{image_path!r}: {type(e).__name__}: {e}")
        if data is None:
            return Reject.of(source_key(url, member), source, STAGE, "null_image", f"column {c.image_column!r} is null")
        if not isinstance(data, (bytes, bytearray)):
            return Reject.of(source_key(url, member), source, STAGE, "bad_image_cell",
                             f"column {c.image_column!r} holds {type(data).__name__}, not bytes")
        problem = too_large(len(data), c)
        if problem:
            return Reject.of(source_key(url, member), source, STAGE, *problem)
        return RawSample(source=source, data=bytes(data), extension=extension)


SHARD_READERS: tuple[ShardReader, ...] = (TarShard(), ParquetShard(), FolderShard(), ImageFileShard())


def reader_for(url: str, is_dir: bool, config: ReadConfig) -> Optional[ShardReader]:
    return next((r for r in SHARD_READERS if r.matches(url, is_dir, config)), None)


# --- Parquet path cells -------------------------------------------------------------------------

class PathNotAllowed(PermissionError):
    pass


class MemberTooLarge(ValueError):
    pass


def _allowed(target: str, prefixes: Iterable[str]) -> bool:
    return any(target == p.rstrip("/") or target.startswith(p.rstrip("/") + "/") for p in prefixes)


def read_path_cell(fs, parquet_path: str, image_path: str, config: ReadConfig) -> bytes:
    """An image a Parquet cell names by path. A relative path resolves beside the Parquet file
    and may not climb out of its folder (nor, on a local disk, link out of it); an absolute path
    or a URL of any scheme is read only when `read.allowed_path_prefixes` holds a prefix of it."""
    if "://" in image_path or image_path.startswith("/"):
        if not _allowed(image_path, config.allowed_path_prefixes):
            raise PathNotAllowed(f"{image_path!r} is outside the shard's folder; list its prefix in "
                                 f"read.allowed_path_prefixes to allow it")
        target_fs, target = url_to_fs(image_path)
    else:
        folder = posixpath.dirname(parquet_path)
        target = posixpath.normpath(posixpath.join(folder, image_path))
        if not (target + "/").startswith(folder.rstrip("/") + "/"):
            raise PathNotAllowed(f"{image_path!r} points outside the shard's folder")
        if is_local(fs) and not (os.path.realpath(target) + os.sep).startswith(os.path.realpath(folder) + os.sep):
            raise PathNotAllowed(f"{image_path!r} links outside the shard's folder")
        target_fs = fs
    problem = too_large(int(target_fs.size(target) or 0), config)
    if problem:
        raise MemberTooLarge(f"{image_path!r}: {problem[1]}")
    return target_fs.cat_file(target)


# --- matching inputs, and the stage -------------------------------------------------------------

def missing_columns(names: list[str], config: ReadConfig) -> str:
    wanted = {"read.image_column": config.image_column, "read.text_column": config.text_column,
              "read.url_column": config.url_column, "read.id_column": config.id_column}
    missing = [f"column {col!r} (recipe field {field}) not found"
               for field, col in wanted.items() if col is not None and col not in names]
    return "; ".join(missing) + (f"; columns are {names}" if missing else "")


def match_inputs(patterns: Iterable[str], config: ReadConfig) -> list[str]:
    """Expand globs to a sorted, de-duplicated list of shard URLs.

    Raises InputError naming the pattern that matches nothing, and checks the columns of the
    first Parquet shard that opens, so a wrong column name fails before the run starts (a
    Parquet file that does not open is left to the read stage: it becomes that shard's reject).
    """
    shards: set[str] = set()
    for pattern in patterns:
        fs, path = url_to_fs(pattern)
        found = fs.glob(path) if _GLOB_CHARS & set(path) else ([path] if fs.exists(path) else [])
        urls = [fs.unstrip_protocol(p) for p in found]
        urls = [u for u in urls if reader_for(u, fs.isdir(url_to_fs(u)[1]), config) is not None]
        if not urls:
            raise InputError(f"input {pattern!r} matches no shard (tar, parquet, image file or folder)")
        shards.update(urls)
    ordered = sorted(shards)
    for url in (u for u in ordered if u.lower().endswith(ParquetShard.suffixes)):
        try:
            with fsspec.open(url, "rb") as f:
                names = pq.ParquetFile(f).schema_arrow.names
        except Exception:  # noqa: BLE001 -- unreadable: the read stage rejects it, naming the file
            continue
        missing = missing_columns(names, config)
        if missing:
            raise InputError(f"{url}: {missing}")
        break
    return ordered


def shard_error(url: str, error: Exception) -> Reject:
    """The reject standing for a shard that broke: truncated, unreadable (both final), or a
    read error of the storage that a later run may not meet (retryable)."""
    text = f"{type(error).__name__} {error}".lower()
    detail = f"{type(error).__name__}: {error}"
    if "truncat" in text or "unexpected end" in text or isinstance(error, EOFError):
        return shard_reject(url, "truncated_shard", detail)
    transient = isinstance(error, (ConnectionError, TimeoutError)) or (
        isinstance(error, OSError) and not isinstance(error, (gzip.BadGzipFile, FileNotFoundError, PermissionError))
        and error.errno in (errno.EIO, errno.ECONNRESET, errno.ETIMEDOUT, errno.EAGAIN, None))
    if transient:
        return shard_reject(url, "shard_read_error", detail, retryable=True)
    return shard_reject(url, "unreadable_shard", detail)


def read_shard(url: str, config: ReadConfig) -> Iterator[Output]:
    """The raw samples and read rejects of one shard; a shard that breaks becomes one shard
    reject after the samples read before the break."""
    try:
        fs, path = url_to_fs(url)
        reader = reader_for(url, fs.isdir(path), config)
        if reader is None:
            yield shard_reject(url, "unknown_shard_type", "not a tar, parquet, folder or image file")
            return
        yield from reader.read(fs, url, path, config)
    except Exception as e:  # noqa: BLE001 -- a broken shard is a reject; samples read before it stand
        yield shard_error(url, e)


class ReadShardFn(StageFn):
    """Shard URL in; RawSamples and read rejects out, streamed."""

    stage = STAGE
    streaming = True

    def __init__(self, config: ReadConfig) -> None:
        super().__init__()
        self.config = config

    def read_shard(self, url: str) -> Iterator[Output]:
        return read_shard(url, self.config)

    def process_element(self, url: str) -> Iterator[Output]:
        return read_shard(url, self.config)

    def element_rejects(self, url: str, error: Exception) -> list[Reject]:
        return [shard_error(url, error)]


class ReadShards(beam.PTransform):
    """Shard URLs (already matched) -> (raw samples, rejects)."""

    def __init__(self, shard_urls: list[str], config: ReadConfig) -> None:
        super().__init__()
        if not shard_urls:
            raise InputError("no input shards")
        self.shard_urls = shard_urls
        self.config = config

    def expand(self, pbegin):
        urls = pbegin | "ShardUrls" >> beam.Create(self.shard_urls) | "SpreadShards" >> beam.Reshuffle()
        return apply_stage_fn(urls, ReadShardFn(self.config), "ReadShard")
