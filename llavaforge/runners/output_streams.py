"""Beam's SDK harness keeps every stage's last output buffer after the stage is done; the fix
lets go of it.

A `DataOutputOperation` (one per output of a fused stage) encodes a bundle's elements into an
output stream that is flushed to the runner every 10 MB and closed at the end of the bundle.
Beam 2.77 keeps the closed stream on the operation, and with it the buffer it grew (up to about
16 MB: it doubles past the flush size), and keeps the operation in its cache of bundle
processors for the next bundle of that stage. A process that runs many stages (the in-process
runner runs them all) so holds up to 16 MB per stage output that nothing reads again, and the
larger the run, the fuller each buffer: memray found 72 MB of them alive at 3,000 images, part
of what grows in `bench/scaling.py`. The next bundle sets a new stream, so the closed one can go.
"""

from __future__ import annotations


def release_closed_output_streams() -> None:
    """Make data outputs drop their stream once it is closed, in this process (idempotent)."""
    # Imported here: the harness pulls in gRPC, which commands that only print flags skip.
    from apache_beam.runners.worker.bundle_processor import DataOutputOperation

    beam_finish = DataOutputOperation.finish
    if getattr(beam_finish, "releases_stream", False):
        return

    def finish(self: DataOutputOperation) -> None:
        beam_finish(self)
        self.output_stream = None  # closed: what it held is with the runner

    finish.releases_stream = True
    DataOutputOperation.finish = finish
