"""Beam's timed data-plane stream loses bytes written while its timer flushes; the fix keeps them."""

from __future__ import annotations

import threading

import pytest
from apache_beam.coders.stream import OutputStream
from apache_beam.runners.worker.data_plane import TimeBasedBufferingClosableOutputStream

from llavaforge.runners import portable
from llavaforge.runners.flush_race import fix_flush_race
from llavaforge.runners.options import pipeline_options


@pytest.fixture
def stock_beam(monkeypatch):
    """The stream class as Beam ships it (another test may have fixed it in this process)."""
    monkeypatch.setattr(TimeBasedBufferingClosableOutputStream, "write", OutputStream.write)


def sent_when_a_write_lands_during_a_flush() -> bytes:
    """Write b"first", flush it as the timer thread does and, while the flush hands the bytes to
    the send queue, write b"second" from another thread; then close. Returns what was sent."""
    sent, handing_over, writer_started = [], threading.Event(), threading.Event()

    def send(data: bytes) -> None:
        sent.append(data)
        if data == b"first":
            handing_over.set()
            writer_started.wait(5)
            # A blocked queue.put: with the fix the writer waits for the flush instead of
            # writing now; this wait gives an unfixed writer the time to write.
            threading.Event().wait(0.3)

    stream = TimeBasedBufferingClosableOutputStream(close_callback=send, flush_callback=send,
                                                    time_flush_threshold_ms=3_600_000)
    stream.write(b"first")
    timer = threading.Thread(target=stream.flush)
    timer.start()
    assert handing_over.wait(5)
    writer = threading.Thread(target=stream.write, args=(b"second",))
    writer.start()
    writer_started.set()
    timer.join(10)
    writer.join(10)
    stream.close()
    return b"".join(sent)


def test_stock_beam_clears_bytes_written_during_a_timed_flush(stock_beam):
    # The race the fix exists for. If this fails, Beam has fixed it: remove flush_race.py.
    assert sent_when_a_write_lands_during_a_flush() == b"first"


def test_the_fix_sends_bytes_written_during_a_timed_flush(stock_beam):
    fix_flush_race()
    fix_flush_race()  # idempotent
    assert sent_when_a_write_lands_during_a_flush() == b"firstsecond"


def test_every_run_and_the_job_service_fix_the_race_in_their_process(stock_beam):
    pipeline_options(["--runner=DirectRunner"])
    assert TimeBasedBufferingClosableOutputStream.write is not OutputStream.write
    TimeBasedBufferingClosableOutputStream.write = OutputStream.write
    servicer, _ = portable.serve(0)
    try:
        assert TimeBasedBufferingClosableOutputStream.write is not OutputStream.write
    finally:
        servicer.stop()
