"""Beam's local runner sends each SDK worker a stage's input in one message; the fix sends it
in messages of Beam's usual size.

The FnApiRunner (the in-process runner, the DirectRunner's multi-processing mode, the portable
job service) keeps every stage's input in memory and, to run the stage, writes a worker's share
into a data-plane stream without ever asking it to flush (`_send_input_to_worker`), so it goes
out as one message when the stream is closed (or whatever a one-second timer catches). After a
shuffle that share is also one byte string (`GroupingBuffer.partition`), built while the grouped
table, the output stream and the string copied out of it are all held. So each worker receives
half a stage's input (with two workers) at once, and a worker's memory grows with the run,
where Beam's data plane otherwise bounds it: messages of about 10 MB, five queued on receipt,
100 MB queued to send. Measured with `bench/scaling.py`: worker peaks rose 1.35x from 1k to 10k
images.

The fix writes a grouped share in chunks of `CHUNK_BYTES`, letting go of each key's values as
they are encoded, and flushes the stream whenever it passes Beam's flush size while it sends,
so a worker's input arrives in bounded messages, under the data plane's back-pressure. Same
elements, in the same order, in the same share per key as Beam's. The in-process runner's
worker (`InMemoryDataChannel`) also kept every message of a stage's input until it had read the
last one: it now lets go of each once read, so that a stage's input is not held twice while it
runs.
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
    """`BundleManager._send_input_to_worker` (Beam 2.77), flushing as it goes."""
    data_out = self._worker_handler.data_conn.output_stream(process_bundle_id, read_transform_id)
    for byte_stream in byte_streams or []:
        data_out.write(byte_stream)
        data_out.maybe_flush()  # each piece holds whole elements, so a message never splits one
    data_out.close()


def _input_elements_let_go(self, instruction_id: str, unused_expected_inputs, abort_callback=None):
    """`InMemoryDataChannel.input_elements` (Beam 2.77), dropping each message as it is read."""
    from apache_beam.portability.api import beam_fn_api_pb2

    other_inputs = []
    while self._inputs:
        element = self._inputs.pop(0)
        if element.instruction_id != instruction_id:
            other_inputs.append(element)
        elif isinstance(element, beam_fn_api_pb2.Elements.Timers):
            if not element.is_last:
                yield element
        elif isinstance(element, beam_fn_api_pb2.Elements.Data) and (element.data or element.is_last):
            yield element
    self._inputs = other_inputs


def bound_input_messages() -> None:
    """Make the local runner send stage inputs in bounded messages, in this process (idempotent)."""
    # Imported here: the runner pulls in gRPC, which commands that only print flags skip.
    from apache_beam.runners.portability.fn_api_runner.execution import GroupingBuffer
    from apache_beam.runners.portability.fn_api_runner.fn_runner import BundleManager
    from apache_beam.runners.worker.data_plane import InMemoryDataChannel

    GroupingBuffer.partition = _partition_in_chunks
    BundleManager._send_input_to_worker = _send_input_in_messages
    InMemoryDataChannel.input_elements = _input_elements_let_go
