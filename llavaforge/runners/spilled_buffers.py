"""Beam's local runner keeps every stage's output in memory until the stages that read it have
run; with this fix it keeps them on disk, so the runner's memory stays flat as a run grows.

The FnApiRunner (the in-process runner, the DirectRunner's multi-processing mode, the portable
job service) holds each PCollection between stages in a buffer: the bytes its workers sent
(`ListBuffer`), or for a GroupByKey every value decoded, in a table by key (`GroupingBuffer`).
Both hold the whole stage output, so the runner's peak grew with the run: records without their
images still took ~8 KB an image in `bench/scaling.py` (1,047 MB at 50,000 images against 622 MB
at 1,000, in-process; 723 MB with this and the in-process worker's input and output streamed,
`input_messages.py`). A distributed runner keeps them in its shuffle service, not in memory.

Here a buffer keeps its first `MEMORY_BYTES` in memory (small outputs, side inputs and counts
never touch the disk) and writes the rest to a temporary file of its own that is unlinked as it is
made: nothing is left behind when the buffer is let go or the process dies, killed or not, and no
other process can open it. A grouped buffer writes each key and value to one of `BUCKETS` buckets
by the key's hash, in the same file, and keeps in memory only where each bucket's pieces lie (an
index by key would hold every key in memory, and question dedup's band grouping has ~15 keys an
image; at 50,000 images the two peaked the same). When the stage that reads it runs, it reads
the buckets back one at a time, groups each by key (values in the order they came) and encodes
the groups for the workers in chunks of `CHUNK_BYTES`, into another such file. Same groups as Beam's, each key in one worker's share,
keys dealt to the shares in turn as Beam does; the key order differs (bucket by bucket, not
first seen overall), which a GroupByKey does not promise. A Reshuffle's grouping is spilled the
same way: its window is the global one with a trigger that fires per element, which a batch run
groups like the default (each key's values, their windows dropped). Kept in memory, as before
2026-12-02, it was the runner's largest holding of Python objects at 50,000 images with two
job-service workers: tracemalloc's peak in the job service fell from 71 MB to 18 MB with it on
disk (its RSS peak, ~350 MB, is elsewhere and did not move). Values of any other windowing keep
their windows in memory, as in Beam (this tool's runs use no other). The files go in the
temporary folder (`TMPDIR`): one on disk, not a RAM disk, is what keeps the memory flat.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
import zlib
from collections.abc import Sequence
from typing import Any, Iterable, Iterator

from apache_beam.coders.coder_impl import create_InputStream, create_OutputStream
from apache_beam.runners.portability.fn_api_runner import execution, fn_runner
from apache_beam.runners.portability.fn_api_runner.execution import GroupingBuffer, ListBuffer
from apache_beam.transforms import trigger
from apache_beam.transforms.window import GlobalWindow, GlobalWindows
from apache_beam.utils import windowed_value

MEMORY_BYTES = 1 << 20
CHUNK_BYTES = 1 << 20
BUCKETS = 256  # a grouped buffer holds about 1/BUCKETS of its keys and values at once when read


@contextlib.contextmanager
def _naming_the_folder() -> Iterator[None]:
    """A failure to make or write a spill file (a full disk) says where, and what sets it."""
    try:
        yield
    except OSError as e:
        raise OSError(e.errno, f"could not keep a stage's output on disk in {tempfile.gettempdir()} "
                               f"(TMPDIR sets the folder): {e.strerror}") from e


class SpillFile:
    """An unlinked temporary file that byte strings are appended to and read back from by
    offset, from any thread; closed (and so freed) with its last reference."""

    def __init__(self) -> None:
        with _naming_the_folder():
            self._file = tempfile.TemporaryFile(prefix="llavaforge-spill-")
        self._size = 0
        self._lock = threading.Lock()

    def write(self, data: bytes | bytearray) -> int:
        """Appends `data`; returns its offset."""
        with self._lock, _naming_the_folder():
            offset = self._size
            view = memoryview(data)
            while view:
                view = view[os.pwrite(self._file.fileno(), view, offset + len(data) - len(view)):]
            self._size += len(data)
        return offset

    def read(self, offset: int, length: int) -> bytes:
        data = os.pread(self._file.fileno(), length, offset)
        while len(data) < length:  # a regular file reads short only at its end
            more = os.pread(self._file.fileno(), length - len(data), offset + len(data))
            if not more:
                raise EOFError(f"spill file ends at {offset + len(data)}, {length - len(data)} bytes short")
            data += more
        return data


class SpilledBytes:
    """Where one byte string of a buffer lies in its spill file."""

    __slots__ = ("file", "offset", "length")

    def __init__(self, file: SpillFile, offset: int, length: int) -> None:
        self.file, self.offset, self.length = file, offset, length

    def read(self) -> bytes:
        return self.file.read(self.offset, self.length)


class Chunks(Sequence):
    """A buffer's byte strings, in order: the first MEMORY_BYTES in memory, the rest in a spill
    file, read back one at a time as they are asked for. A slice shares the spilled strings."""

    def __init__(self, entries: Iterable[bytes | SpilledBytes] = ()) -> None:
        self._entries: list[bytes | SpilledBytes] = list(entries)
        self._in_memory = sum(len(e) for e in self._entries if isinstance(e, bytes))
        self._file: SpillFile | None = None

    def append(self, chunk: bytes) -> None:
        if self._in_memory + len(chunk) <= MEMORY_BYTES:
            self._entries.append(chunk)
            self._in_memory += len(chunk)
            return
        if self._file is None:
            self._file = SpillFile()
        self._entries.append(SpilledBytes(self._file, self._file.write(chunk), len(chunk)))

    def extend(self, other: Iterable[bytes]) -> None:
        for entry in list(other._entries if isinstance(other, Chunks) else other):  # other may be self
            if isinstance(entry, SpilledBytes):
                self._entries.append(entry)
            else:
                self.append(entry)

    def __len__(self) -> int:
        return len(self._entries)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return Chunks(self._entries[index])
        entry = self._entries[index]
        return entry if isinstance(entry, bytes) else entry.read()

    def __iter__(self) -> Iterator[bytes]:
        for entry in self._entries:
            yield entry if isinstance(entry, bytes) else entry.read()

    def spilled_bytes(self) -> int:
        return sum(e.length for e in self._entries if isinstance(e, SpilledBytes))


class SpillingListBuffer(ListBuffer):
    """Beam's ListBuffer (2.77) with its byte strings in `Chunks`."""

    def __init__(self, coder_impl) -> None:
        super().__init__(coder_impl)
        self._inputs = Chunks()

    def copy(self) -> "SpillingListBuffer":
        new = SpillingListBuffer(self._coder_impl)
        new._inputs = self._inputs[:]
        return new

    def clear(self) -> None:
        super().clear()
        self._inputs = Chunks()


class SpillingGroupingBuffer(GroupingBuffer):
    """Beam's GroupingBuffer (2.77) with the keys and values of the global window on disk, in
    BUCKETS buckets by key: read back and grouped one bucket at a time, and encoded for the
    workers in chunks."""

    def __init__(self, pre_grouped_coder, post_grouped_coder, windowing) -> None:
        super().__init__(pre_grouped_coder, post_grouped_coder, windowing)
        # The windowings whose groups in a batch run are each key's values, whatever their
        # windows and timestamps: the default, and a Reshuffle's (the global window, fired per
        # element). Their values go to disk without their windows.
        self._spilling = isinstance(trigger.create_trigger_driver(windowing, True), trigger.BatchGlobalTriggerDriver)
        self._value_coder_impl = pre_grouped_coder.value_coder().get_impl()
        self._file: SpillFile | None = None
        self._buckets: list[list[tuple[int, int]]] = [[] for _ in range(BUCKETS)]  # each one's pieces in the file

    def append(self, elements_data: bytes) -> None:
        if self._grouped_output:
            raise RuntimeError("Grouping table append after read.")
        input_stream = create_InputStream(elements_data)
        coder_impl = self._pre_grouped_coder.get_impl()
        key_coder_impl = self._key_coder.get_impl()
        pieces: dict[int, Any] = {}  # bucket -> its records from this message
        while input_stream.size() > 0:
            windowed_key_value = coder_impl.decode_from_stream(input_stream, True)
            key, value = windowed_key_value.value
            encoded_key = key_coder_impl.encode(key)
            if self._spilling:
                bucket = zlib.crc32(encoded_key) % BUCKETS
                stream = pieces.get(bucket)
                if stream is None:
                    stream = pieces[bucket] = create_OutputStream()
                encoded_value = self._value_coder_impl.encode(value)
                stream.write_var_int64(len(encoded_key))
                stream.write(encoded_key)
                stream.write_var_int64(len(encoded_value))
                stream.write(encoded_value)
            else:
                self._table[encoded_key].append(windowed_key_value.with_value(value))
        self._spill({bucket: stream.get() for bucket, stream in pieces.items()})

    def extend(self, input_buffer) -> None:
        if isinstance(input_buffer, ListBuffer):
            return  # Beam's: a grouped input may come with an empty ListBuffer
        assert isinstance(input_buffer, SpillingGroupingBuffer), f"Input was not a grouping buffer: {input_buffer}"
        for key, values in list(input_buffer._table.items()):
            self._table[key].extend(values)
        for bucket, extents in enumerate(input_buffer._buckets):
            for offset, length in list(extents):
                self._spill({bucket: input_buffer._file.read(offset, length)})

    def partition(self, n: int) -> list[list[bytes]]:
        if self._grouped_output:
            return self._grouped_output
        if self._windowing.is_default():
            globally_window = GlobalWindows.windowed_value(
                None, timestamp=GlobalWindow().max_timestamp(),
                pane_info=windowed_value.PaneInfo(is_first=True, is_last=True,
                                                  timing=windowed_value.PaneInfoTiming.ON_TIME,
                                                  index=0, nonspeculative_index=0)).with_value

            def windowed_key_values(key, values):
                return [globally_window((key, values))]
        else:
            group_values = trigger.create_trigger_driver(self._windowing, True).process_entire_key
            if self._spilling:  # values came back from disk without windows, which this driver drops

                def windowed_key_values(key, values):
                    return group_values(key, [GlobalWindows.windowed_value(value) for value in values])
            else:
                windowed_key_values = group_values
        coder_impl = self._post_grouped_coder.get_impl()
        key_coder_impl = self._key_coder.get_impl()
        shares = [Chunks() for _ in range(n)]
        streams = [create_OutputStream() for _ in range(n)]
        for idx, (encoded_key, values) in enumerate(self._groups()):
            part = idx % n
            for wkvs in windowed_key_values(key_coder_impl.decode(encoded_key), values):
                coder_impl.encode_to_stream(wkvs, streams[part], True)
            if streams[part].size() >= CHUNK_BYTES:
                shares[part].append(streams[part].get())
                streams[part] = create_OutputStream()
        for part, stream in enumerate(streams):
            if stream.size() or not shares[part]:
                shares[part].append(stream.get())
        self._grouped_output = shares
        return shares

    def _spill(self, pieces: dict[int, bytes]) -> None:
        """Writes each bucket's piece, all in one write."""
        if not pieces:
            return
        if self._file is None:
            self._file = SpillFile()
        offset = self._file.write(b"".join(pieces.values()))
        for bucket, piece in pieces.items():
            self._buckets[bucket].append((offset, len(piece)))
            offset += len(piece)

    def _groups(self) -> Iterator[tuple[bytes, list[Any]]]:
        """Each key with its values, in the order they came: bucket by bucket, and in a bucket
        (or Beam's table) in the order the keys were first seen; letting go of each bucket (or
        key) once given."""
        for bucket in range(BUCKETS):
            grouped: dict[bytes, list[bytes]] = {}
            for offset, length in self._buckets[bucket]:
                stream = create_InputStream(self._file.read(offset, length))
                while stream.size() > 0:
                    key = stream.read(stream.read_var_int64())
                    grouped.setdefault(key, []).append(stream.read(stream.read_var_int64()))
            self._buckets[bucket] = []
            for key, values in grouped.items():
                yield key, [self._value_coder_impl.decode(value) for value in values]
        self._file = None
        for key in list(self._table):
            yield key, self._table.pop(key)


def spill_stage_buffers() -> None:
    """Make the local runner in this process keep stage outputs on disk (idempotent)."""
    # Beam's runner looks both names up when it makes a buffer; fn_runner imported ListBuffer's.
    execution.ListBuffer = fn_runner.ListBuffer = SpillingListBuffer
    execution.GroupingBuffer = SpillingGroupingBuffer
