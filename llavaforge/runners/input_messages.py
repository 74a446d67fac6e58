"""Beam's local runner hands a worker its whole share of a stage's input at once, and takes the
in-process worker's output only once the bundle is done; the fix streams both.

The FnApiRunner (the in-process runner, the DirectRunner's multi-processing mode, the portable
job service) writes a bundle's input into the data channel without flushing
(`_send_input_to_worker`), so a worker gets its share as one message (or what a one-second timer
catches): the in-process worker keeps every message of the stage until it has read the last, and
a worker process holds its half of the stage at once. (How the runner itself holds a stage's
input between stages, in chunks on disk, is `spilled_buffers.py`.)

The fix flushes the send to a worker process at `MESSAGE_BYTES` as it goes. The in-process
worker runs a bundle inside the runner's request, after the whole input is on its channel: the
runner now puts there the input to read instead of its bytes, and the worker reads it one piece
at a time from the runner's buffer (from disk) and lets go of each once read. Its output
waited on the channel until the bundle was done, and the runner has a bundle's outputs taken
into the stage's buffers (to disk) as the worker writes them. In `bench/scaling.py` at 50,000
images the in-process runner's peak was the shard writer's start, with its whole input (a record
of ~3.3 KB an image) on the channel; with that read as it goes, the LLM stage's and the
`Synthesize` join's, with their whole output on it.

Bounded messages need one more change for a worker process: Beam's runner sends all of a
bundle's input before it asks the worker to start the bundle, and a worker queues at most five
messages of a bundle it has not started, so a share over five messages plus the runner's send
queue (100 MB) would wait on itself (a test shows it with small queues). `process_bundle`
therefore asks a worker process to start the bundle first and sends the input from a thread
while it gathers the output, as Beam's own split path and a distributed runner's data plane do.

Between processes, Beam's data channels send messages of up to 10 MB and queue up to 100 MB
each way: the runner's send queue to each worker, and in a worker the queue of a bundle's input
and its send queue. With the fix they send messages of `MESSAGE_BYTES` (1 MB) and queue two. A
message is copied on its way (the output stream's buffer, the `Elements.Data` message made of it,
the `Elements` that gathers several, gRPC's serialized bytes), each copy a heap block of its own,
and a stage of more than a few messages kept the queues and copies full for as long as it ran;
glibc's heap kept the space freed between them. In `bench/scaling.py` at 50,000 images with two
job-service workers (mallinfo2 every 0.25 s, one run after the other) a worker's heap held up to
309 MB in use and 190 MB free with 10 MB messages and 20 MB queues, 201 MB and 47 MB with 1 MB
messages (190 MB and 24 MB at 1,000 images, where a stage's input is a few messages): worker
peak 768 -> 665 MB (635 and 624 MB at 1,000) and the job service's 628 -> 338 MB, in the same time.
"""

from __future__ import annotations

import logging
import threading

MESSAGE_BYTES = 1 << 20  # Beam's: 10 MB
QUEUE_BYTES = 2 * MESSAGE_BYTES  # enough to keep a worker busy; Beam's: 100 MB


class _InputToRead:
    """A bundle's input on the in-process worker's channel, in the runner's buffer until the
    worker reads it, one piece at a time (each holds whole elements)."""

    def __init__(self, instruction_id: str, transform_id: str, byte_streams) -> None:
        self.instruction_id = instruction_id
        self.transform_id = transform_id
        self._byte_streams = byte_streams

    def elements(self):
        from apache_beam.portability.api import beam_fn_api_pb2

        for byte_stream in self._byte_streams:
            if byte_stream:
                yield beam_fn_api_pb2.Elements.Data(instruction_id=self.instruction_id,
                                                    transform_id=self.transform_id, data=byte_stream)


def _send_input_in_messages(self, process_bundle_id: str, read_transform_id: str, byte_streams) -> None:
    """`BundleManager._send_input_to_worker` (Beam 2.77), flushing every `MESSAGE_BYTES`; to the
    in-process worker, the input to read as it goes."""
    from apache_beam.runners.worker.data_plane import InMemoryDataChannel

    data_conn = self._worker_handler.data_conn
    if isinstance(data_conn, InMemoryDataChannel):
        data_conn.inverse()._inputs.append(_InputToRead(process_bundle_id, read_transform_id, byte_streams or []))
        return
    data_out = data_conn.output_stream(process_bundle_id, read_transform_id)
    for byte_stream in byte_streams or []:
        data_out.write(byte_stream)
        if data_out.size() >= MESSAGE_BYTES:  # each piece holds whole elements: no element is split
            data_out.flush()
    data_out.close()


class _InputSender(threading.Thread):
    """Sends a bundle's input to a worker process while the runner gathers the bundle's output."""

    def __init__(self, send) -> None:
        # A daemon: after a failed bundle it ends once the worker has discarded the rest, or
        # with the process if the worker is gone.
        super().__init__(name="send_bundle_input", daemon=True)
        self._send = send
        self.failure: BaseException | None = None

    def run(self) -> None:
        try:
            self._send()
        except BaseException as failure:  # raised in the runner's thread, which the worker would otherwise keep waiting
            self.failure = failure


def _process_bundle_sending_alongside(self, inputs, expected_outputs, fired_timers, expected_output_timers,
                                      dry_run: bool = False):
    """`BundleManager.process_bundle` (Beam 2.77), which asks a worker process to start the bundle
    before it sends the bundle's input, from another thread, and takes the in-process worker's
    output into the stage's buffers as it is written."""
    from apache_beam.portability.api import beam_fn_api_pb2
    from apache_beam.runners.portability.fn_api_runner.fn_runner import BundleManager, ProgressRequester
    from apache_beam.runners.worker.data_plane import InMemoryDataChannel

    with BundleManager._lock:
        BundleManager._uid_counter += 1
        process_bundle_id = "bundle_%s" % BundleManager._uid_counter
        self._worker_handler = self.bundle_context_manager.worker_handlers[
            BundleManager._uid_counter % len(self.bundle_context_manager.worker_handlers)]

    split_manager = self._select_split_manager()
    if split_manager:
        logging.info("Using split manager %s", split_manager)

    def send_input() -> None:
        for transform_id, timer_family_id in expected_output_timers.keys():
            self._send_timers_to_worker(process_bundle_id, transform_id, timer_family_id,
                                        fired_timers.get((transform_id, timer_family_id), []))
        for transform_id, elements in inputs.items():
            self._send_input_to_worker(process_bundle_id, transform_id, elements)

    def take_output(output) -> None:
        if isinstance(output, beam_fn_api_pb2.Elements.Timers) and not dry_run:
            with BundleManager._lock:
                timer_buffer = self.bundle_context_manager.get_buffer(
                    expected_output_timers[(output.transform_id, output.timer_family_id)][0], output.transform_id)
                if timer_buffer.cleared:
                    timer_buffer.reset()
                timer_buffer.append(output.timers)
        if isinstance(output, beam_fn_api_pb2.Elements.Data) and not dry_run:
            with BundleManager._lock:
                self.bundle_context_manager.get_buffer(expected_outputs[output.transform_id],
                                                       output.transform_id).append(output.data)

    sender = None
    in_process = isinstance(self._worker_handler.data_conn, InMemoryDataChannel)
    if not split_manager:
        if in_process:
            send_input()
            _output_takers(self._worker_handler.data_conn)[process_bundle_id] = take_output
        else:
            sender = _InputSender(send_input)

    try:  # a taker is let go once the bundle is over, also when the in-process worker's run of it raises
        process_bundle_req = beam_fn_api_pb2.InstructionRequest(
            instruction_id=process_bundle_id,
            process_bundle=beam_fn_api_pb2.ProcessBundleRequest(
                process_bundle_descriptor_id=self.bundle_context_manager.process_bundle_descriptor.id,
                cache_tokens=[next(self._cache_token_generator)]))
        result_future = self._worker_handler.control_conn.push(process_bundle_req)
        if sender is not None:
            sender.start()

        def aborted() -> bool:
            return ((sender is not None and sender.failure is not None)
                    or (result_future.is_done() and bool(result_future.get().error)))

        split_results = []
        with ProgressRequester(self._worker_handler, process_bundle_id, self._progress_frequency):
            if split_manager:
                split_results = self._generate_splits_for_testing(split_manager, inputs, process_bundle_id)

            expect_reads = list(expected_outputs.keys())
            expect_reads.extend(list(expected_output_timers.keys()))
            for output in self._worker_handler.data_conn.input_elements(process_bundle_id, expect_reads,
                                                                         abort_callback=aborted):
                take_output(output)

            if sender is not None and sender.failure is not None:
                raise sender.failure  # before waiting on the worker: it waits for the rest of its input
            result = result_future.get()
    finally:
        if in_process:
            _output_takers(self._worker_handler.data_conn).pop(process_bundle_id, None)

    if result.error:
        raise RuntimeError(result.error)
    if sender is not None:
        sender.join()  # the worker finished the bundle, so it has read all the input sent

    if result.process_bundle.requires_finalization:
        finalize_request = beam_fn_api_pb2.InstructionRequest(
            finalize_bundle=beam_fn_api_pb2.FinalizeBundleRequest(instruction_id=process_bundle_id))
        finalize_response = self._worker_handler.control_conn.push(finalize_request).get()
        if finalize_response.error:
            raise RuntimeError(finalize_response.error)

    return result, split_results


def _output_takers(runner_side) -> dict:
    """The runner's takers of the in-process worker's output, by bundle, on the runner's side of
    the channel."""
    return runner_side.__dict__.setdefault("_llavaforge_output_takers", {})


def _output_stream_taken(self, instruction_id: str, transform_id: str):
    """`InMemoryDataChannel.output_stream` (Beam 2.77), whose output the runner takes as it is
    written when it has a taker for the bundle (Beam's waited on the channel for the bundle's end)."""
    from apache_beam.portability.api import beam_fn_api_pb2
    from apache_beam.runners.worker.data_plane import ClosableOutputStream

    def add_to_inverse_output(data: bytes) -> None:
        output = beam_fn_api_pb2.Elements.Data(instruction_id=instruction_id, transform_id=transform_id, data=data)
        take = _output_takers(self._inverse).get(instruction_id)
        if take is None:
            self._inverse._inputs.append(output)
        else:
            take(output)

    return ClosableOutputStream.create(add_to_inverse_output, add_to_inverse_output, self._data_buffer_time_limit_ms)


def _input_elements_let_go(self, instruction_id: str, unused_expected_inputs, abort_callback=None):
    """`InMemoryDataChannel.input_elements` (Beam 2.77), dropping each message as it is read and
    reading an input left in the runner's buffer piece by piece."""
    from apache_beam.portability.api import beam_fn_api_pb2

    other_inputs = []
    try:
        while self._inputs:
            element = self._inputs.pop(0)
            if element.instruction_id != instruction_id:
                other_inputs.append(element)
            elif isinstance(element, beam_fn_api_pb2.Elements.Timers):
                if not element.is_last:
                    yield element
            elif isinstance(element, beam_fn_api_pb2.Elements.Data) and (element.data or element.is_last):
                yield element
            elif isinstance(element, _InputToRead):
                yield from element.elements()
    finally:  # also when the reader stops early (its bundle failed): other bundles' input stays
        self._inputs = other_inputs + self._inputs


def stream_bundle_data() -> None:
    """Make the local runner in this process stream a bundle's input to its worker, and the
    in-process worker's output to the runner, as the bundle runs (idempotent)."""
    # Imported here: the runner pulls in gRPC, which commands that only print flags skip.
    from apache_beam.runners.portability.fn_api_runner.fn_runner import BundleManager
    from apache_beam.runners.worker.data_plane import InMemoryDataChannel

    BundleManager._send_input_to_worker = _send_input_in_messages
    BundleManager.process_bundle = _process_bundle_sending_alongside
    InMemoryDataChannel.input_elements = _input_elements_let_go
    InMemoryDataChannel.output_stream = _output_stream_taken


def _output_stream_of_message_size(close_callback, flush_callback, data_buffer_time_limit_ms: int):
    """`ClosableOutputStream.create` (Beam 2.77), whose size-based stream flushes at MESSAGE_BYTES
    (Beam's threshold is bound as a default argument when its module loads)."""
    from apache_beam.runners.worker import data_plane

    if data_buffer_time_limit_ms > 0:  # refused by every run's options (options.py); Beam's as it was
        return data_plane.TimeBasedBufferingClosableOutputStream(
            close_callback, flush_callback=flush_callback, time_flush_threshold_ms=data_buffer_time_limit_ms)
    return data_plane.SizeBasedBufferingClosableOutputStream(close_callback, flush_callback=flush_callback,
                                                             size_flush_threshold=MESSAGE_BYTES)


def bound_data_channel_messages() -> None:
    """Make the data channels this process opens from now on send messages of about
    MESSAGE_BYTES and queue at most QUEUE_BYTES each way (a runner's, or a worker's:
    worker_plugin.py)."""
    from apache_beam.runners.worker import data_plane

    # Beam reads both whenever a channel or a bundle's input queue is made, and when a channel
    # gathers queued messages into one to send; one message over the queue's bytes still goes
    # through (ByteLimitedQueue lets a single element exceed them).
    data_plane._DEFAULT_SEND_QUEUE_MAX_BYTES = QUEUE_BYTES
    data_plane._DEFAULT_SIZE_FLUSH_THRESHOLD = MESSAGE_BYTES
    data_plane.ClosableOutputStream.create = staticmethod(_output_stream_of_message_size)
