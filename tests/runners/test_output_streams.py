"""After a run, no stage keeps the output buffer of its last bundle (runners/output_streams.py)."""

from __future__ import annotations

from tests.conftest import run_python

# A run through two shuffles on the in-process runner; its last stage counts the bytes still held
# by the output streams of the harness's data outputs (the earlier stages' are closed by then). In a subprocess: the fix patches Beam for the process.
RUN = """
import gc, sys
import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.worker.bundle_processor import DataOutputOperation
if sys.argv[1] == "fixed":
    from llavaforge.runners.output_streams import release_closed_output_streams
    release_closed_output_streams()
    release_closed_output_streams()  # twice: once patched, stays patched once

def held_by_earlier_stages(_):
    outputs = [o for o in gc.get_objects() if isinstance(o, DataOutputOperation)]
    held = sum(o.output_stream.size() for o in outputs if getattr(o, "output_stream", None) is not None)
    print(len(outputs), held)

with beam.Pipeline(options=PipelineOptions(["--runner=DirectRunner", "--direct_running_mode=in_memory"])) as p:
    (p | beam.Create(range(2000)) | beam.Map(lambda i: (i % 7, b"x" * 1000)) | beam.GroupByKey()
     | beam.Map(lambda kv: (0, len(list(kv[1])))) | "Last" >> beam.GroupByKey() | beam.Map(held_by_earlier_stages))
"""


def held_after_run(mode: str) -> tuple[int, int]:
    done = run_python(RUN, mode, timeout=300)
    outputs, held = map(int, done.stdout.split())
    return outputs, held


def test_closed_output_streams_are_released():
    outputs, held = held_after_run("plain")
    assert outputs > 0 and held > 2000 * 1000  # Beam alone keeps what the stages last wrote
    outputs, held = held_after_run("fixed")
    assert outputs > 0 and held == 0
