"""Beam's PortableRunner gives up on a job that runs longer than `--job_server_timeout`; the fix
follows a job to its end.

The flag (300 s by default) is documented as the wait for each answer of the job service, "not
the actual pipeline run time", but Beam 2.77's driver also opens the job's state and message
streams with it as their deadline (`JobServiceHandle.run`). So every run on a job service that
takes over five minutes failed in the driver with DEADLINE_EXCEEDED while the job went on: a
50,000-image run on llavaforge's job service, after 300 s, published nothing. The fix opens the
two streams without a deadline, as Beam itself does when it opens them after the job started;
requests keep theirs.
"""

from __future__ import annotations


class _StreamsWithoutDeadline:
    """A job service stub whose job state and message streams have no deadline."""

    def __init__(self, stub) -> None:
        self._stub = stub

    def __getattr__(self, name: str):
        return getattr(self._stub, name)

    def GetStateStream(self, request, timeout=None, **kwargs):  # noqa: N802 -- the gRPC method's name
        return self._stub.GetStateStream(request, **kwargs)

    def GetMessageStream(self, request, timeout=None, **kwargs):  # noqa: N802
        return self._stub.GetMessageStream(request, **kwargs)


def follow_jobs_to_the_end() -> None:
    """Make the PortableRunner's driver wait for the job's end however long it runs, in this
    process (idempotent)."""
    # Imported here: the runner pulls in gRPC, which commands that only print flags skip.
    from apache_beam.runners.portability.portable_runner import JobServiceHandle

    beam_init = JobServiceHandle.__init__
    if getattr(beam_init, "follows_to_the_end", False):
        return

    def __init__(self, job_service, options, retain_unknown_options=False) -> None:
        beam_init(self, job_service, options, retain_unknown_options)
        self.job_service = _StreamsWithoutDeadline(job_service)

    __init__.follows_to_the_end = True
    JobServiceHandle.__init__ = __init__
