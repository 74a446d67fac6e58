"""Beam's local runner holds a stage's input several times over while it runs the stage; the
fix holds it about once.

The FnApiRunner (the in-process runner, the DirectRunner's multi-processing mode, the portable
job service) keeps every stage's input in memory. After a shuffle it encodes each worker's share
into one byte string (`GroupingBuffer.partition`) while the grouped table, the output stream
and the string copied out of it are all held: three copies of the grouped data at the peak. To
run a stage in-process it writes the whole input into the worker's `InMemoryDataChannel`
without flushing (`_send_input_to_worker`), as one message, and the worker keeps every message
of the stage until it has read the last: two more copies while the stage runs.

The fix encodes a grouped share in chunks of `CHUNK_BYTES`, letting go of each key's values as
they are encoded (same elements, in the same order, in the same share per key as Beam's); the
in-process send flushes at Beam's 10 MB message size as it goes; the in-process worker lets go
of each message once read. A worker process still gets its share as Beam sends it (one message,
or what a one-second timer catches): the runner sends a bundle's input before it asks the
worker to start the bundle, and a worker queues at most five messages of a bundle it has not
started, so bounded messages to a worker process deadlock on a large stage (a 50,000-image run
with 2 workers hung until its gRPC deadline).
"""

from __future__ import annotations

CHUNK_BYTES = 1 << 20


def _partition_in_chunks(self, n: int) -> list[list[bytes]]:
    """`GroupingBuffer.partition` (Beam 2.77) with bounded chunks; the windowing is Beam's."""
    from apache_beam.coders.coder_impl import create_OutputStream
    from apache_beam.transforms import trigger
    from apache_beam.transforms.window import GlobalWindow, GlobalWindows
    from apache_beam.utils import windowed_value

    if not self._grouped_output:
        if self._windowing.is_default():
            globally_window = GlobalWindows.windowed_value(
                None, timestamp=GlobalWindow().max_timestamp(),
                pane_info=windowed_value.PaneInfo(is_first=True, is_last=True,
                                                  timing=windowed_value.PaneInfoTiming.ON_TIME,
                                                  index=0, nonspeculative_index=0)).with_value

            def windowed_key_values(key, values):
                return [globally_window((key, values))]
        else:
            windowed_key_values = trigger.create_trigger_driver(self._windowing, True).process_entire_key
        coder_impl = self._post_grouped_coder.get_impl()
        key_coder_impl = self._key_coder.get_impl()
        chunks: list[list[bytes]] = [[] for _ in range(n)]
        streams = [create_OutputStream() for _ in range(n)]
        for idx, encoded_key in enumerate(list(self._table)):
            values = self._table.pop(encoded_key)
            part = idx % n
            for wkvs in windowed_key_values(key_coder_impl.decode(encoded_key), values):
                coder_impl.encode_to_stream(wkvs, streams[part], True)
            if streams[part].size() >= CHUNK_BYTES:
                chunks[part].append(streams[part].get())
                streams[part] = create_OutputStream()
        for part, stream in enumerate(streams):
            if stream.size() or not chunks[part]:
                chunks[part].append(stream.get())
        self._grouped_output = chunks
    return self._grouped_output


def _send_input_in_messages(self, process_bundle_id: str, read_transform_id: str, byte_streams) -> None:
    """`BundleManager._send_input_to_worker` (Beam 2.77), flushing as it goes to an in-process
    worker (whose channel queues without bound)."""
    from apache_beam.runners.worker.data_plane import InMemoryDataChannel

    data_conn = self._worker_handler.data_conn
    in_process = isinstance(data_conn, InMemoryDataChannel)
    data_out = data_conn.output_stream(process_bundle_id, read_transform_id)
    for byte_stream in byte_streams or []:
        data_out.write(byte_stream)
        if in_process:
            data_out.maybe_flush()  # each piece holds whole elements, so a message never splits one
    data_out.close()


def _input_elements_let_go(self, instruction_id: str, unused_expected_inputs, abort_callback=None):
    """`InMemoryDataChannel.input_elements` (Beam 2.77), dropping each message as it is read."""
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
    finally:  # also when the reader stops early (its bundle failed): other bundles' input stays
        self._inputs = other_inputs + self._inputs


def hold_stage_inputs_once() -> None:
    """Make the local runner hold a stage's input about once while it runs it, in this process
    (idempotent)."""
    # Imported here: the runner pulls in gRPC, which commands that only print flags skip.
    from apache_beam.runners.portability.fn_api_runner.execution import GroupingBuffer
    from apache_beam.runners.portability.fn_api_runner.fn_runner import BundleManager
    from apache_beam.runners.worker.data_plane import InMemoryDataChannel

    GroupingBuffer.partition = _partition_in_chunks
    BundleManager._send_input_to_worker = _send_input_in_messages
    InMemoryDataChannel.input_elements = _input_elements_let_go
