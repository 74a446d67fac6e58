"""The local runner streams bundles (runners/input_messages.py): a bundle's input goes out in
bounded messages, to a worker process while the bundle runs; the in-process worker reads it
piece by piece and lets go of each message once read, and its output is taken as it is
written; data channels between processes send 1 MB messages and queue two each way."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import apache_beam as beam
import pytest
from apache_beam.portability.api import beam_fn_api_pb2
from apache_beam.runners.worker.data_plane import ClosableOutputStream, InMemoryDataChannel
from apache_beam.testing.util import assert_that, equal_to

from llavaforge.runners import input_messages
from llavaforge.runners.options import pipeline_options
from tests.conftest import own_temporary_folder


def bundle_manager(data_conn):
    """What BundleManager's send methods use of their BundleManager."""
    return type("Manager", (), {"_worker_handler": type("WorkerHandler", (), {"data_conn": data_conn})()})()


def sent_messages(send, data_conn, pieces: list[bytes]) -> list[bytes]:
    """The messages a bundle's input goes out in through `data_conn`, sent by `send` (a
    BundleManager method)."""
    send(bundle_manager(data_conn), "bundle", "read", pieces)
    return [m.data for m in data_conn.inverse()._inputs if m.data]


class WorkerProcessChannel:
    """A worker process's data channel as the runner writes to it (Beam's size-flushing stream),
    without gRPC: what is flushed or closed arrives on `inverse()._inputs`."""

    def __init__(self) -> None:
        self._received = type("Received", (), {"_inputs": []})()

    def inverse(self):
        return self._received

    def output_stream(self, instruction_id: str, transform_id: str) -> ClosableOutputStream:
        def send(data: bytes) -> None:
            self._received._inputs.append(beam_fn_api_pb2.Elements.Data(
                instruction_id=instruction_id, transform_id=transform_id, data=data))

        return ClosableOutputStream.create(send, send, data_buffer_time_limit_ms=0)


PIECE_BYTES = 256 << 10
PIECES = [bytes([i]) * PIECE_BYTES for i in range(120)]  # 30 MB of whole-element pieces


def test_a_bundles_input_goes_out_to_a_worker_process_in_messages_of_a_megabyte():
    messages = sent_messages(input_messages._send_input_in_messages, WorkerProcessChannel(), PIECES)
    assert b"".join(messages) == b"".join(PIECES)
    assert len(messages) >= 25 and max(map(len, messages)) <= input_messages.MESSAGE_BYTES + PIECE_BYTES


class CountedPieces:
    """A runner's buffer of pieces that counts the pieces read from it."""

    def __init__(self, pieces: list[bytes]) -> None:
        self.pieces, self.read = pieces, 0

    def __iter__(self):
        for piece in self.pieces:
            self.read += 1
            yield piece


def test_the_in_process_worker_reads_a_bundles_input_from_the_runners_buffer_a_piece_at_a_time():
    pieces = CountedPieces(PIECES)
    runner_side = InMemoryDataChannel()
    input_messages._send_input_in_messages(bundle_manager(runner_side), "bundle", "read", pieces)
    assert pieces.read == 0  # Beam's copied all 30 MB onto the channel before the bundle ran
    read = input_messages._input_elements_let_go(runner_side.inverse(), "bundle", None)
    assert next(read).data == PIECES[0] and pieces.read == 1
    rest = list(read)
    assert [e.data for e in rest] == PIECES[1:]
    assert runner_side.inverse()._inputs == []


# A 40 MB stage input to one worker process, in 256 KB messages through a 1 MB send queue: far
# more than the five messages a worker queues for a bundle. `beams-order` sends it the way Beam's
# runner does, all before the bundle starts; `send-fails` and `worker-fails` break the send and
# the stage. In a subprocess: the fix patches Beam for the process, and a hang has to be killed.
RUN_LARGE_SHARE = """
import sys
import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.portability.fn_api_runner.fn_runner import BundleManager
from apache_beam.runners.worker import data_plane
from llavaforge.runners import input_messages
from llavaforge.runners.options import mend_local_runner

mode = sys.argv[1]
beams_process_bundle = BundleManager.process_bundle
mend_local_runner()
input_messages.MESSAGE_BYTES = 256 << 10
data_plane._DEFAULT_SEND_QUEUE_MAX_BYTES = 1 << 20
if mode == "beams-order":
    BundleManager.process_bundle = beams_process_bundle
if mode == "send-fails":
    def send_then_fail(self, process_bundle_id, read_transform_id, byte_streams):
        if len(b"".join(byte_streams)) > 1 << 20:
            raise OSError("the send broke")
        input_messages._send_input_in_messages(self, process_bundle_id, read_transform_id, byte_streams)
    BundleManager._send_input_to_worker = send_then_fail

def count(key_values, fail):
    if fail:
        raise ValueError("the stage broke")
    return len(list(key_values[1]))

options = PipelineOptions(["--runner=DirectRunner", "--direct_running_mode=multi_processing", "--direct_num_workers=1"])
with beam.Pipeline(options=options) as p:
    (p | beam.Create([0]) | beam.FlatMap(lambda _: ((i % 500, b"x" * 1000) for i in range(40000)))
     | beam.GroupByKey() | beam.Map(count, mode == "worker-fails") | beam.CombineGlobally(sum) | beam.Map(print))
"""


def run_large_share(mode: str, timeout: float) -> subprocess.CompletedProcess | None:
    """The run's outcome, or None if it was still running after `timeout` seconds."""
    with own_temporary_folder() as env:
        run = subprocess.Popen([sys.executable, "-c", RUN_LARGE_SHARE, mode], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env=env, start_new_session=True)
        try:
            stdout, stderr = run.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(run.pid, signal.SIGKILL)  # the runner and its worker process
            run.communicate()
            return None
    return subprocess.CompletedProcess(run.args, run.returncode, stdout, stderr)


@pytest.mark.slow
def test_a_worker_process_gets_a_large_share_in_bounded_messages_while_the_bundle_runs():
    done = run_large_share("mended", timeout=120)
    assert done is not None and done.returncode == 0, done and done.stderr[-2000:]
    assert done.stdout.split() == ["40000"]
    # Sent all before the bundle starts, as Beam's runner does, the same messages wait on themselves.
    assert run_large_share("beams-order", timeout=20) is None


@pytest.mark.slow
@pytest.mark.parametrize("mode, error", [("send-fails", "the send broke"), ("worker-fails", "the stage broke")])
def test_a_broken_send_or_stage_fails_the_run_instead_of_hanging_it(mode, error):
    done = run_large_share(mode, timeout=120)
    assert done is not None and done.returncode != 0
    assert error in done.stderr


def in_process_worker_side(instructions: tuple[str, ...]) -> InMemoryDataChannel:
    """The in-process worker's channel holding one message per instruction, in order."""
    runner_side = InMemoryDataChannel()
    for instruction in instructions:
        stream = runner_side.output_stream(instruction, "read")
        stream.write(instruction.encode() * 10)
        stream.close()
    return runner_side.inverse()


def test_the_in_process_worker_lets_go_of_each_message_once_read():
    worker_side = in_process_worker_side(("a", "b", "a"))
    read = input_messages._input_elements_let_go(worker_side, "a", None)
    first = next(read)
    assert first.data == b"a" * 10
    assert all(e is not first for e in worker_side._inputs)  # Beam's kept it until the last was read
    assert [e.data for e in read] == [b"a" * 10]
    assert [e.data for e in worker_side._inputs] == [b"b" * 10]  # another bundle's input stays


def test_the_in_process_workers_output_is_taken_as_written_when_the_runner_has_a_taker_for_its_bundle():
    runner_side, taken = InMemoryDataChannel(), []
    input_messages._output_takers(runner_side)["taken"] = taken.append
    for instruction in ("taken", "left"):
        stream = input_messages._output_stream_taken(runner_side.inverse(), instruction, "write")
        stream.write(instruction.encode() * 10)
        stream.flush()
        if instruction == "taken":
            assert len(taken) == 1 and not runner_side._inputs  # in Beam's, on the channel until the bundle was done
        stream.close()
    assert [(e.instruction_id, e.data) for e in taken] == [("taken", b"taken" * 10), ("taken", b"")]
    assert [(e.instruction_id, e.data) for e in runner_side._inputs] == [("left", b"left" * 10), ("left", b"")]


def broken_stage(element):
    raise ValueError("the stage broke")


def test_a_failed_in_process_bundle_lets_go_of_its_output_taker(monkeypatch):
    output_takers, channels_takers = input_messages._output_takers, []

    def recorded(runner_side) -> dict:
        takers = output_takers(runner_side)
        channels_takers.append(takers)
        return takers

    monkeypatch.setattr(input_messages, "_output_takers", recorded)
    with pytest.raises(Exception, match="the stage broke"):  # raised by the in-process worker's run of the bundle
        with beam.Pipeline(options=pipeline_options(["--direct_running_mode=in_memory"])) as p:
            p | beam.Create(range(10)) | beam.Map(broken_stage)
    assert channels_takers and not any(channels_takers)


def test_a_reader_that_stops_early_leaves_other_bundles_input():
    worker_side = in_process_worker_side(("b", "a", "a"))
    read = input_messages._input_elements_let_go(worker_side, "a", None)
    next(read)
    read.close()  # the bundle failed after its first message
    assert [e.instruction_id for e in worker_side._inputs] == ["b", "a"]


def test_a_pipeline_through_the_mended_runner_groups_as_before():
    with beam.Pipeline(options=pipeline_options(["--direct_running_mode=in_memory"])) as p:
        counts = (p | beam.Create(range(20000)) | "Keyed" >> beam.Map(lambda i: (i % 500, b"x" * 400))
                  | beam.GroupByKey() | "Count" >> beam.Map(lambda kv: (kv[0], len(list(kv[1])))))
        assert_that(counts, equal_to([(k, 40) for k in range(500)]))


def test_the_data_channels_a_mended_process_opens_send_messages_of_a_megabyte_and_queue_two_each_way():
    from apache_beam.runners.worker.data_plane import _GrpcDataChannel

    input_messages.bound_data_channel_messages()
    channel = _GrpcDataChannel()  # a runner's end and a worker's are both one
    try:
        queues = (channel._to_send, channel._pending_send, channel._received["bundle"])
        assert [q.max_bytes for q in queues] == [2 * input_messages.MESSAGE_BYTES] * 3  # Beam's: 100 MB
        stream = channel.output_stream("bundle", "transform")
        element = b"x" * (input_messages.MESSAGE_BYTES // 4)
        for _ in range(5):  # flushed once over a message's bytes (Beam's: at 10 MB)
            stream.write(element)
            stream.maybe_flush()
        assert channel._to_send.get(timeout=10).data == element * 5  # a thread forwards it to this queue
        assert channel._pending_send.qsize() == channel._to_send.qsize() == 0
    finally:
        channel.close()
