"""A driver on a job service follows a job that runs longer than `--job_server_timeout` to its
end (runners/job_streams.py); Beam's own driver gives up with DEADLINE_EXCEEDED."""

from __future__ import annotations

import subprocess
import sys

import pytest

from llavaforge.runners.portable import job_service
from tests.conftest import own_temporary_folder

# A job of about 8 s on a job service, with a 3 s job service timeout. `plain` is Beam's driver;
# in a subprocess: the fix patches Beam for the process.
RUN = """
import sys, time
import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions
from llavaforge.runners.options import pipeline_options

flags = sys.argv[2:]
with beam.Pipeline(options=PipelineOptions(flags) if sys.argv[1] == "plain" else pipeline_options(flags)) as p:
    p | beam.Create([8]) | beam.Map(time.sleep)
print("followed to the end")
"""


def drive(mode: str, flags: list[str]) -> subprocess.CompletedProcess:
    with own_temporary_folder() as env:  # Beam's own driver leaves its folder of SDK dependencies
        return subprocess.run([sys.executable, "-c", RUN, mode, *flags], capture_output=True, text=True, env=env,
                               timeout=300)


@pytest.mark.slow
def test_a_job_longer_than_the_job_server_timeout_is_followed_to_its_end():
    with job_service(1) as service:
        flags = [*service.flags, "--job_server_timeout=3"]
        plain = drive("plain", flags)
        assert plain.returncode != 0 and "DEADLINE_EXCEEDED" in plain.stderr
        mended = drive("mended", flags)
        assert mended.returncode == 0, mended.stderr[-2000:]
        assert mended.stdout.split("\n")[-2] == "followed to the end"
