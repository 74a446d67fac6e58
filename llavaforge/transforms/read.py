"""ReadShards: input globs -> one element per shard -> raw samples, streamed.

Every path goes through fsspec (local, file://, memory://, gs://, s3://). Globs are matched
once at launch (so a pattern matching nothing is a usage error and nightly runs can diff
the list against the ledger); the shard list is then reshuffled so shards spread over
workers, and each shard is read as a stream, never whole.
"""

from __future__ import annotations

import json
import logging
import posixpath
from typing import Iterable, Iterator, Optional, Union

import apache_beam as beam
import fsspec
import pyarrow.parquet as pq
from apache_beam.metrics import Metrics
from fsspec.core import url_to_fs
from webdataset.tariterators import base_plus_ext, tar_file_iterator

from llavaforge.recipe import ReadConfig
from llavaforge.schemas.record import RawSample, Reject, Source, source_key
from llavaforge.transforms.base import REJECTS

log = logging.getLogger(__name__)

STAGE = "read"
TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz")
PARQUET_SUFFIXES = (".parquet", ".pq")
_GLOB_CHARS = set("*?[")


class InputError(ValueError):
    """An input pattern that cannot be read (matches nothing, wrong Parquet columns)."""


def shard_kind(url: str, config: ReadConfig, is_dir: bool) -> Optional[str]:
    lower = url.lower()
    if is_dir:
        return "folder"
    if lower.endswith(TAR_SUFFIXES):
        return "tar"
    if lower.endswith(PARQUET_SUFFIXES):
        return "parquet"
    if lower.rsplit(".", 1)[-1] in config.image_extensions:
        return "file"
    return None


def match_inputs(patterns: Iterable[str], config: ReadConfig) -> list[str]:
    """Expand globs to a sorted, de-duplicated list of shard URLs.

    Raises InputError naming the pattern that matches nothing, and checks the first
    Parquet shard's columns so a wrong column name fails before the run starts.
    """
    shards: set[str] = set()
    for pattern in patterns:
        fs, path = url_to_fs(pattern)
        if _GLOB_CHARS & set(path):
            found = fs.glob(path)
        else:
            found = [path] if fs.exists(path) else []
        urls = [fs.unstrip_protocol(p) for p in found]
        urls = [u for u in urls if shard_kind(u, config, fs.isdir(url_to_fs(u)[1])) is not None]
        if not urls:
            raise InputError(f"input {pattern!r} matches no shard (tar, parquet, image file or folder)")
        shards.update(urls)
    ordered = sorted(shards)
    first_parquet = next((u for u in ordered if u.lower().endswith(PARQUET_SUFFIXES)), None)
    if first_parquet:
        with fsspec.open(first_parquet, "rb") as f:
            missing = _missing_columns(pq.ParquetFile(f).schema_arrow.names, config)
        if missing:
            raise InputError(f"{first_parquet}: {missing}")
    return ordered


def _missing_columns(names: list[str], config: ReadConfig) -> str:
    wanted = {"read.image_column": config.image_column, "read.text_column": config.text_column,
              "read.url_column": config.url_column, "read.id_column": config.id_column}
    missing = [f"column {col!r} (recipe field {field}) not found"
               for field, col in wanted.items() if col is not None and col not in names]
    return "; ".join(missing) + (f"; columns are {names}" if missing else "")


def group_members(members: Iterable[tuple[str, bytes]]) -> Iterator[tuple[str, dict[str, tuple[str, bytes]]]]:
    """Group consecutive members by key as WebDataset does (key = path up to the first dot
    of the basename, via webdataset's own `base_plus_ext`).

    Unlike webdataset's `group_by_keys`, a repeated extension within a key starts a new
    sample instead of raising, so a tar with duplicate names loses nothing.
    Yields (key, {extension: (member name, bytes)}).
    """
    key, group = None, {}
    for name, data in members:
        base, ext = base_plus_ext(name)
        if base is None:  # no extension at all
            base, ext = name, ""
        ext = ext.lower()
        if group and (base != key or ext in group):
            yield key, group
            group = {}
        key = base
        group[ext] = (name, data)
    if group:
        yield key, group


def samples_from_group(url: str, group: dict[str, tuple[str, bytes]], config: ReadConfig) -> Iterator[Union[RawSample, Reject]]:
    """One RawSample per image member of a group, siblings attached; a group with no image
    becomes a reject naming its members."""
    texts = [data.decode("utf-8", errors="replace").strip()
             for ext, (_, data) in sorted(group.items()) if ext in config.text_extensions]
    texts = [t for t in texts if t]
    meta = group.get(config.metadata_extension)
    metadata = meta[1].decode("utf-8", errors="replace") if meta else None
    images = [(ext, name, data) for ext, (name, data) in sorted(group.items())
              if ext in config.image_extensions]
    if not images:
        names = sorted(name for name, _ in group.values())
        first = names[0]
        yield Reject.of(source_key(url, first), Source(url=url, member=first), STAGE, "no_image",
                        f"no member with an image extension among {names}")
        return
    for ext, name, data in images:
        yield RawSample(source=Source(url=url, member=name, texts=texts, metadata=metadata),
                        data=data, extension=ext)


def _tar_members(fileobj) -> Iterator[tuple[str, bytes]]:
    for item in tar_file_iterator(fileobj):
        yield item["fname"], item["data"]


def _folder_members(fs, root: str) -> Iterator[tuple[str, bytes]]:
    # Sorted listing keeps each key's files consecutive, as in a tar; files are read one
    # at a time as the grouping asks for them.
    for path in sorted(fs.find(root)):
        yield posixpath.relpath(path, root), fs.cat_file(path)


class ReadShardFn(beam.DoFn):
    """Shard URL in; RawSamples and read rejects out."""

    def __init__(self, config: ReadConfig) -> None:
        super().__init__()
        self.config = config
        self._shards = Metrics.counter(STAGE, "shards")
        self._samples = Metrics.counter(STAGE, "out")
        self._rejected = Metrics.counter(STAGE, "rejected")

    def process(self, url: str) -> Iterator:
        samples = rejects = 0
        for out in self.read_shard(url):
            if isinstance(out, Reject):
                rejects += 1
                yield beam.pvalue.TaggedOutput(REJECTS, out)
            else:
                samples += 1
                yield out
        self._samples.inc(samples)
        self._rejected.inc(rejects)
        self._shards.inc()
        log.info("read %s: %d samples, %d rejects", url, samples, rejects)

    def read_shard(self, url: str) -> Iterator[Union[RawSample, Reject]]:
        fs, path = url_to_fs(url)
        kind = shard_kind(url, self.config, fs.isdir(path))
        try:
            if kind == "tar":
                with fs.open(path, "rb") as f:
                    yield from self._grouped(url, _tar_members(f))
            elif kind == "folder":
                yield from self._grouped(url, _folder_members(fs, path))
            elif kind == "file":
                yield from self._single_file(fs, url, path)
            elif kind == "parquet":
                yield from self._parquet(fs, url, path)
            else:
                yield Reject.of(source_key(url, ""), Source(url=url, member=""), STAGE,
                                "unknown_shard_type", "not a tar, parquet, folder or image file")
        except Exception as e:  # noqa: BLE001 -- a broken shard is a reject; samples read before it stand
            yield Reject.of(source_key(url, ""), Source(url=url, member=""), STAGE,
                            _shard_error_reason(e), f"{type(e).__name__}: {e}")

    def _grouped(self, url: str, members: Iterable[tuple[str, bytes]]) -> Iterator[Union[RawSample, Reject]]:
        # A shard that breaks mid-way (truncated tar) still yields the sample being grouped
        # when it broke: its members were read whole. The error is raised after it.
        failures: list[Exception] = []

        def until_failure() -> Iterator[tuple[str, bytes]]:
            try:
                yield from members
            except Exception as e:  # noqa: BLE001 -- re-raised below, after the flush
                failures.append(e)

        for _, group in group_members(until_failure()):
            yield from samples_from_group(url, group, self.config)
        if failures:
            raise failures[0]

    def _single_file(self, fs, url: str, path: str) -> Iterator[Union[RawSample, Reject]]:
        """An image file matched directly by a glob, with its sibling text/metadata files."""
        base = path.rsplit(".", 1)[0]
        name = posixpath.basename(path)
        group = {name.rsplit(".", 1)[-1].lower(): (name, fs.cat_file(path))}
        for ext in [*self.config.text_extensions, self.config.metadata_extension]:
            sibling = f"{base}.{ext}"
            if fs.exists(sibling):
                group[ext] = (posixpath.basename(sibling), fs.cat_file(sibling))
        yield from samples_from_group(posixpath.dirname(url) or url, group, self.config)

    def _parquet(self, fs, url: str, path: str) -> Iterator[Union[RawSample, Reject]]:
        c = self.config
        with fs.open(path, "rb") as f:
            parquet = pq.ParquetFile(f)
            missing = _missing_columns(parquet.schema_arrow.names, c)
            if missing:
                yield Reject.of(source_key(url, ""), Source(url=url, member=""), STAGE,
                                "missing_column", missing)
                return
            columns = [col for col in (c.image_column, c.text_column, c.url_column, c.id_column) if col]
            columns = list(dict.fromkeys(columns))
            row = 0
            # One row group at a time: pyarrow's iter_batches reads ahead through the
            # whole file, which is what streaming must avoid for image-heavy shards.
            for group in range(parquet.num_row_groups):
                for batch in parquet.read_row_group(group, columns=columns).to_batches(c.parquet_batch_rows):
                    for item in batch.to_pylist():
                        yield self._parquet_row(fs, url, path, row, item)
                        row += 1

    def _parquet_row(self, fs, url: str, path: str, row: int, item: dict) -> Union[RawSample, Reject]:
        c = self.config
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
                    data = _read_relative(fs, path, image_path)
                except Exception as e:  # noqa: BLE001 -- one unreadable path is one reject
                    return Reject.of(source_key(url, member), source, STAGE, "unreadable_image_path",
                                     f"{image_path!r}: {type(e).__name__}: {e}")
        if data is None:
            return Reject.of(source_key(url, member), source, STAGE, "null_image",
                             f"column {c.image_column!r} is null")
        if not isinstance(data, (bytes, bytearray)):
            return Reject.of(source_key(url, member), source, STAGE, "bad_image_cell",
                             f"column {c.image_column!r} holds {type(data).__name__}, not bytes")
        return RawSample(source=source, data=bytes(data), extension=extension)


def _read_relative(fs, parquet_path: str, image_path: str) -> bytes:
    """An image referenced by path: relative paths resolve beside the Parquet file, and
    may not climb out of its folder."""
    if "://" in image_path:
        with fsspec.open(image_path, "rb") as f:
            return f.read()
    folder = posixpath.dirname(parquet_path)
    resolved = posixpath.normpath(posixpath.join(folder, image_path))
    if not (resolved + "/").startswith(folder.rstrip("/") + "/"):
        raise PermissionError(f"image path {image_path!r} points outside the shard's folder")
    return fs.cat_file(resolved)


def _shard_error_reason(e: Exception) -> str:
    text = f"{type(e).__name__} {e}".lower()
    if "truncat" in text or "unexpected end" in text or isinstance(e, EOFError):
        return "truncated_shard"
    return "unreadable_shard"


class ReadShards(beam.PTransform):
    """Shard URLs (already matched) -> (raw samples, rejects)."""

    def __init__(self, shard_urls: list[str], config: ReadConfig) -> None:
        super().__init__()
        if not shard_urls:
            raise InputError("no input shards")
        self.shard_urls = shard_urls
        self.config = config

    def expand(self, pbegin):
        outputs = (
            pbegin
            | "ShardUrls" >> beam.Create(self.shard_urls)
            | "SpreadShards" >> beam.Reshuffle()
            | "ReadShard" >> beam.ParDo(ReadShardFn(self.config)).with_outputs(REJECTS, main="samples")
        )
        return outputs.samples, outputs[REJECTS]
