"""Every SDK worker of a run is mended, also the ones llavaforge does not start itself: the
DirectRunner's multi-processing workers import the worker plugin that every run's options name."""

from __future__ import annotations

import json

import pytest
from apache_beam.options.pipeline_options import SetupOptions

from llavaforge.runners.allocator import _glibc
from llavaforge.runners.input_messages import MESSAGE_BYTES, QUEUE_BYTES
from llavaforge.runners.options import WORKER_PLUGIN, pipeline_options
from tests.conftest import run_python

# Prints what a multi-processing worker reports: whether it is another process, trims its heap,
# lets go of closed output streams, the bytes its data channels queue and the size at which its
# output streams flush a message. In a script: its function is pickled by value.
REPORT_A_WORKER = """
import json, os, sys, threading
import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions
from llavaforge.runners.options import pipeline_options

def worker_state(_, driver):
    from apache_beam.runners.worker import data_plane
    from apache_beam.runners.worker.bundle_processor import DataOutputOperation
    return json.dumps([os.getpid() != driver, any(t.name == "heap-trim" for t in threading.enumerate()),
                       getattr(DataOutputOperation.finish, "releases_stream", False),
                       data_plane._DEFAULT_SEND_QUEUE_MAX_BYTES,
                       data_plane.ClosableOutputStream.create(None, None, 0)._size_flush_threshold])

args = ["--runner=DirectRunner", "--direct_running_mode=multi_processing", "--direct_num_workers=1"]
options = pipeline_options(args) if sys.argv[1] == "run" else PipelineOptions(args)
with beam.Pipeline(options=options) as p:
    p | beam.Create([0]) | beam.Map(worker_state, os.getpid()) | beam.Map(print)
"""


@pytest.mark.slow
@pytest.mark.skipif(_glibc() is None, reason="the heap trimming is glibc's")
@pytest.mark.parametrize("options", ["run", "plain-beam"])
def test_a_multi_processing_worker_is_mended_by_the_plugin_of_every_runs_options(options):
    done = run_python(REPORT_A_WORKER, options, timeout=180)
    mended = options == "run"
    queue_bytes, message_bytes = (QUEUE_BYTES, MESSAGE_BYTES) if mended else (100 << 20, 10 << 20)  # Beam's
    assert json.loads(done.stdout.strip().splitlines()[-1]) == [True, mended, mended, queue_bytes, message_bytes]


def test_every_runs_options_name_the_plugin_once_beside_the_users():
    assert pipeline_options([]).view_as(SetupOptions).beam_plugins == [WORKER_PLUGIN]
    plugins = pipeline_options(["--beam_plugins=mine", f"--beam_plugins={WORKER_PLUGIN}"]).view_as(SetupOptions).beam_plugins
    assert plugins == ["mine", WORKER_PLUGIN]
