"""The local runner keeps stage outputs on disk (runners/spilled_buffers.py): its buffers give
what Beam's give (the same pieces in the same order; the same groups, each key in one share)
while holding at most MEMORY_BYTES each in memory, in files that have no name from the moment
they are made."""

from __future__ import annotations

import gc
import os

import apache_beam as beam
import pytest
from apache_beam.coders import coders
from apache_beam.coders.coder_impl import create_InputStream, create_OutputStream
from apache_beam.runners.portability.fn_api_runner import execution
from apache_beam.runners.portability.fn_api_runner.execution import GroupingBuffer, ListBuffer
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.transforms import core, window
from apache_beam.transforms.trigger import AccumulationMode, AfterCount

from llavaforge.runners import spilled_buffers
from llavaforge.runners.options import pipeline_options
from llavaforge.runners.spilled_buffers import (MEMORY_BYTES, Chunks, SpillFile, SpillingGroupingBuffer,
                                                SpillingListBuffer)

PRE = coders.WindowedValueCoder(coders.TupleCoder([coders.BytesCoder(), coders.BytesCoder()]),
                                coders.GlobalWindowCoder())
POST = coders.WindowedValueCoder(
    coders.TupleCoder([coders.BytesCoder(), coders.IterableCoder(coders.BytesCoder())]), coders.GlobalWindowCoder())
GLOBAL = core.Windowing(window.GlobalWindows())

KEYS, VALUES_PER_KEY, VALUE_BYTES = 300, 20, 1000  # 6 MB in all


@pytest.fixture(autouse=True)
def beams_own_buffers(monkeypatch):
    """Beam's classes under Beam's names, as before a run installs the fix: the expected results
    come from Beam's own buffers, whose methods look those names up."""
    monkeypatch.setattr(execution, "ListBuffer", ListBuffer)
    monkeypatch.setattr(execution, "GroupingBuffer", GroupingBuffer)


def value(i: int) -> bytes:
    return b"%08d" % i + b"x" * (VALUE_BYTES - 8)


def key_values_messages(messages: int = 3) -> list[bytes]:
    """The pre-grouping input of KEYS keys with VALUES_PER_KEY values each, as a worker sends it."""
    streams = [create_OutputStream() for _ in range(messages)]
    for i in range(KEYS * VALUES_PER_KEY):
        PRE.get_impl().encode_to_stream(window.GlobalWindows.windowed_value((b"k%d" % (i % KEYS), value(i))),
                                        streams[i % messages], True)
    return [stream.get() for stream in streams]


def filled(buffer, messages: list[bytes]):
    for message in messages:
        buffer.append(message)
    return buffer


def windowed_values(pieces, coder=POST) -> list:
    """The windowed values encoded in `pieces`, in order."""
    found = []
    for piece in pieces:
        stream = create_InputStream(piece)
        while stream.size() > 0:
            found.append(coder.get_impl().decode_from_stream(stream, True))
    return found


def decoded(pieces) -> list[tuple]:
    return [(wv.value[0], list(wv.value[1])) for wv in windowed_values(pieces)]


def open_files_in(folder) -> int:
    """Files this process has open in `folder`, named or not."""
    links = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            links.append(os.readlink(f"/proc/self/fd/{fd}"))
        except OSError:  # the listing's own descriptor, closed by now
            pass
    return sum(link.startswith(f"{folder}/") for link in links)


def groups(shares) -> dict[bytes, list[bytes]]:
    return {key: values for share in shares for key, values in decoded(share)}


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_a_grouped_buffer_gives_beams_groups_from_disk_in_chunks_dealing_keys_to_shares_in_turn(workers):
    messages = key_values_messages()
    beams = filled(GroupingBuffer(PRE, POST, GLOBAL), messages).partition(workers)
    buffer = filled(SpillingGroupingBuffer(PRE, POST, GLOBAL), messages)

    assert not buffer._table  # keys and values are on disk; in memory, where each bucket's pieces lie
    assert buffer._file._size > KEYS * VALUES_PER_KEY * VALUE_BYTES
    assert sum(map(len, buffer._buckets)) <= len(messages) * spilled_buffers.BUCKETS
    shares = buffer.partition(workers)
    assert groups(shares) == groups(beams)  # each key's values, in the order they came
    assert groups(shares)[b"k7"] == [value(i) for i in range(7, KEYS * VALUES_PER_KEY, KEYS)]
    keys_per_share = [len(decoded(share)) for share in shares]
    assert sum(keys_per_share) == KEYS and max(keys_per_share) - min(keys_per_share) <= 1  # each key once, in turn
    largest_group = VALUES_PER_KEY * (VALUE_BYTES + 8)
    assert all(len(share) > 1 for share in shares)  # each share over a chunk: several chunks
    assert max(len(chunk) for share in shares for chunk in share) < spilled_buffers.CHUNK_BYTES + largest_group
    assert all(share._in_memory <= MEMORY_BYTES for share in shares)
    assert buffer._file is None and not any(buffer._buckets)  # each bucket let go once encoded
    assert buffer.partition(workers) is shares  # read again: the same chunks


def test_a_grouped_buffer_extended_by_another_holds_both_values_as_beams_does():
    first, second = key_values_messages(2)
    beams = filled(GroupingBuffer(PRE, POST, GLOBAL), [first])
    beams.extend(filled(GroupingBuffer(PRE, POST, GLOBAL), [second]))
    buffer = filled(SpillingGroupingBuffer(PRE, POST, GLOBAL), [first])
    buffer.extend(filled(SpillingGroupingBuffer(PRE, POST, GLOBAL), [second]))
    buffer.extend(SpillingListBuffer(None))  # Beam's: an empty list buffer beside a grouped input adds nothing
    assert groups(buffer.partition(2)) == groups(beams.partition(2))


def test_a_reshuffles_grouping_goes_to_disk_and_gives_what_beams_gives():
    # The windowing Beam's ReshufflePerKey (2.77) puts on its GroupByKey's input.
    reshuffle = core.Windowing(window.GlobalWindows(), triggerfn=AfterCount(1),
                               accumulation_mode=AccumulationMode.DISCARDING,
                               timestamp_combiner=window.TimestampCombiner.OUTPUT_AT_EARLIEST)
    stream = create_OutputStream()
    for i in range(KEYS * VALUES_PER_KEY):
        PRE.get_impl().encode_to_stream(window.GlobalWindows.windowed_value((b"k%d" % (i % KEYS), value(i)), timestamp=i),
                                        stream, True)
    beams = filled(GroupingBuffer(PRE, POST, reshuffle), [stream.get()])
    buffer = filled(SpillingGroupingBuffer(PRE, POST, reshuffle), [stream.get()])
    assert not buffer._table and buffer._file._size > KEYS * VALUES_PER_KEY * VALUE_BYTES

    def elements(buffer, workers) -> dict:
        return {wv.value[0]: (list(wv.value[1]), wv.timestamp, wv.windows, wv.pane_info)
                for share in buffer.partition(workers) for wv in windowed_values(share)}

    assert elements(buffer, 2) == elements(beams, 2) and len(elements(beams, 2)) == KEYS


def test_a_grouped_buffer_of_another_windowing_keeps_its_windows_in_memory_as_beams_does():
    fixed = core.Windowing(window.FixedWindows(10))
    pre = coders.WindowedValueCoder(coders.TupleCoder([coders.BytesCoder(), coders.BytesCoder()]),
                                    coders.IntervalWindowCoder())
    post = coders.WindowedValueCoder(coders.TupleCoder([coders.BytesCoder(), coders.IterableCoder(coders.BytesCoder())]),
                                     coders.IntervalWindowCoder())
    stream = create_OutputStream()
    for i in range(40):
        pre.get_impl().encode_to_stream(
            window.WindowedValue((b"k%d" % (i % 3), value(i)), i, [window.IntervalWindow((i // 10) * 10, (i // 10) * 10 + 10)]),
            stream, True)
    beams = filled(GroupingBuffer(pre, post, fixed), [stream.get()])
    buffer = filled(SpillingGroupingBuffer(pre, post, fixed), [stream.get()])
    assert buffer._file is None and len(buffer._table) == 3

    def elements(buffer) -> list:
        return [(wv.value[0], list(wv.value[1]), wv.windows) for wv in windowed_values(buffer.partition(1)[0], post)]

    assert elements(buffer) == elements(beams) and len(elements(beams)) == 12


def test_a_list_buffer_keeps_a_megabyte_in_memory_and_gives_back_what_beams_does():
    pieces = [bytes([i]) * (300 << 10) for i in range(40)]  # 12 MB of 300 KB messages
    beams, buffer = filled(ListBuffer(None), pieces), filled(SpillingListBuffer(None), pieces)

    assert buffer._inputs._in_memory <= MEMORY_BYTES
    assert buffer._inputs.spilled_bytes() == sum(map(len, pieces)) - buffer._inputs._in_memory
    assert list(buffer) == list(beams) == pieces
    assert [list(share) for share in buffer.partition(3)] == [list(share) for share in beams.partition(3)]
    copy = buffer.copy()
    copy.extend(filled(SpillingListBuffer(None), pieces[:5]))
    assert list(copy) == pieces + pieces[:5] and list(buffer) == pieces  # a copy shares the spilled pieces
    copy.extend(copy)
    assert list(copy) == (pieces + pieces[:5]) * 2
    buffer.clear()
    with pytest.raises(RuntimeError, match="cleared"):
        list(buffer)
    buffer.reset()
    buffer.append(b"again")
    assert list(buffer) == [b"again"]


def test_a_list_buffer_of_fewer_pieces_than_workers_is_split_by_element_as_beams_is():
    stream = create_OutputStream()
    for i in range(2000):
        coders.BytesCoder().get_impl().encode_to_stream(value(i), stream, True)
    piece = stream.get()  # one 2 MB piece: over MEMORY_BYTES, so on disk
    beams = filled(ListBuffer(coders.BytesCoder().get_impl()), [piece])
    buffer = filled(SpillingListBuffer(coders.BytesCoder().get_impl()), [piece])
    assert buffer._inputs.spilled_bytes() == len(piece)
    assert buffer.partition(2) == beams.partition(2)


def test_a_spill_file_has_no_name_and_is_closed_with_its_last_reference(tmp_path, monkeypatch):
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    chunks = Chunks()
    for i in range(4):
        chunks.append(bytes([i]) * MEMORY_BYTES)
    assert open_files_in(tmp_path) == 1
    assert os.listdir(tmp_path) == []  # unlinked as it was made: a killed process leaves nothing
    share = chunks[1::2]
    del chunks
    gc.collect()
    assert open_files_in(tmp_path) == 1 and list(share) == [b"\x01" * MEMORY_BYTES, b"\x03" * MEMORY_BYTES]
    del share
    gc.collect()
    assert open_files_in(tmp_path) == 0


def test_a_spill_file_reads_back_what_was_written_at_each_offset():
    spill = SpillFile()
    pieces = [os.urandom(n) for n in (0, 1, 70_000, 3 << 20)]
    offsets = [spill.write(p) for p in pieces]
    assert [spill.read(o, len(p)) for o, p in zip(offsets, pieces)] == pieces
    with pytest.raises(EOFError, match="short"):
        spill.read(offsets[-1], len(pieces[-1]) + 1)


def test_a_full_disk_fails_with_an_error_that_names_the_folder_and_tmpdir(tmp_path, monkeypatch):
    import errno

    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    spill = SpillFile()

    def full(*_):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "pwrite", full)
    with pytest.raises(OSError, match=f"on disk in {tmp_path} \\(TMPDIR sets the folder\\): No space left") as failure:
        spill.write(b"x" * 10)
    assert failure.value.errno == errno.ENOSPC


def test_a_run_keeps_its_stage_outputs_on_disk_with_no_file_left_in_the_temporary_folder(tmp_path, monkeypatch):
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    made = []
    monkeypatch.setattr(SpillFile, "__init__", lambda self, init=SpillFile.__init__: (made.append(1), init(self))[1])

    def spill_files_named(_):
        yield [name for _, _, names in os.walk(tmp_path) for name in names if "llavaforge-spill-" in name]

    with beam.Pipeline(options=pipeline_options(["--runner=DirectRunner"])) as p:
        grouped = (p | beam.Create(range(4000))
                   | beam.Map(lambda i: (i % 50, b"%06d" % i + b"y" * 2000))
                   | beam.GroupByKey()
                   | beam.MapTuple(lambda k, vs: (k, len(list(vs)), sorted(v[:6] for v in vs)[0])))
        assert_that(grouped, equal_to([(k, 80, b"%06d" % k) for k in range(50)]))
        during = (grouped | beam.combiners.Count.Globally() | beam.ParDo(spill_files_named))
        assert_that(during, equal_to([[]]), label="nothing named")
    assert made  # 8 MB went through the runner's buffers, most on disk
