"""A Beam runner that behaves like a Flex Template / scheduler launch: it submits the job and
returns at once, never waiting. The job runs later on a DirectRunner thread, released by the test."""

from __future__ import annotations

import threading

from apache_beam.runners.direct.direct_runner import DirectRunner
from apache_beam.runners.runner import PipelineResult, PipelineRunner, PipelineState


class _Submitted(PipelineResult):
    def wait_until_finish(self, duration=None):
        return self.state  # a launcher returns as soon as the job is submitted

    def metrics(self):
        raise NotImplementedError("a launcher has no job metrics")


class NeverWaitsRunner(PipelineRunner):
    start = threading.Event()  # set by the test once the driver has returned
    jobs: list[threading.Thread] = []
    errors: list[BaseException] = []

    def run_pipeline(self, pipeline, options):
        def job() -> None:
            NeverWaitsRunner.start.wait(120)
            try:
                DirectRunner().run_pipeline(pipeline, options).wait_until_finish()
            except BaseException as e:  # noqa: BLE001 -- reported to the test
                NeverWaitsRunner.errors.append(e)

        thread = threading.Thread(target=job, daemon=True)
        thread.start()
        NeverWaitsRunner.jobs.append(thread)
        return _Submitted(PipelineState.DONE)
