"""A race in Beam's data plane that loses elements on its local runner, and its fix.

Beam 2.77's FnApiRunner (the DirectRunner's multi-processing mode, the portable job service)
sends each bundle's input to an SDK worker process through a
`TimeBasedBufferingClosableOutputStream`: one thread writes the input into it while a timer
thread flushes it every second. `flush` hands `get()` (a copy of the buffer) to the send queue,
then calls `_clear()`; `write` does not take the flush lock. Bytes written in between (the send
queue's `put` can block there, letting the writer run) are cleared unsent, and the worker
processes the bundle without them: elements are lost without an error. It needs a bundle
whose input takes over a second to write, so it shows with large inputs and busy runners,
most with several workers per stage (their sending threads compete for the GIL); reproduced
with plain Beam in `bench/repro_flush_race.py`.

The fix makes `write` hold the same lock as `flush`. It covers the runner's writes (Python
calls, `BundleManager._send_input_to_worker`); Cython coders inside an SDK worker write to
their streams without Python dispatch, so a worker whose own streams flush on a timer is not
covered (the DirectRunner's multi-threading mode: refused in `options.py`).
"""

from __future__ import annotations

from apache_beam.coders.stream import OutputStream


def _write_under_flush_lock(self, b: bytes, nested: bool = False) -> None:
    with self._flush_lock:  # noqa: SLF001 -- the lock Beam's flush() holds
        OutputStream.write(self, b, nested)


def fix_flush_race() -> None:
    """Make the runner's timed data-plane streams write under their flush lock, in this process
    (idempotent). Leaves the class alone if this Beam defines its own `write` on it."""
    # Imported here: the data plane pulls in gRPC, which commands that only print flags skip.
    from apache_beam.runners.worker.data_plane import TimeBasedBufferingClosableOutputStream

    if TimeBasedBufferingClosableOutputStream.write is OutputStream.write:
        TimeBasedBufferingClosableOutputStream.write = _write_under_flush_lock
