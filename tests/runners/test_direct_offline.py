"""A local run never detours through Prism (direct_offline.py): a graph Beam's DirectRunner would
send to Prism runs on the FnApiRunner, and leaves nothing in the temporary folder."""

from __future__ import annotations

import os

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.direct.direct_runner import SwitchingDirectRunner
from apache_beam.runners.portability import prism_runner
from apache_beam.testing.util import assert_that, equal_to

from llavaforge.runners.options import pipeline_options


@pytest.fixture
def prism_tries(monkeypatch) -> list:
    """The pipelines the DirectRunner hands to Prism; each try fails at once, as Prism's download
    does offline, and the DirectRunner falls back to the FnApiRunner."""
    tries = []

    def run_pipeline(self, pipeline, options):
        tries.append(pipeline)
        raise RuntimeError("no Prism in this test")

    monkeypatch.setattr(prism_runner.PrismRunner, "run_pipeline", run_pipeline)
    return tries


def run_a_grouping(options: PipelineOptions) -> None:
    with beam.Pipeline(options=options) as p:
        grouped = p | beam.Create([("a", 1), ("b", 2), ("a", 3)]) | beam.GroupByKey()
        assert_that(grouped | beam.MapTuple(lambda k, vs: (k, sorted(vs))), equal_to([("a", [1, 3]), ("b", [2])]))


def test_beams_direct_runner_sends_this_graph_to_prism(prism_tries, monkeypatch):
    monkeypatch.setattr(SwitchingDirectRunner, "_is_interactive", False)  # Beam's own, unmended
    run_a_grouping(PipelineOptions(["--runner=DirectRunner"]))
    assert len(prism_tries) == 1


@pytest.mark.parametrize("args", [[], ["--runner=DirectRunner"]])
def test_every_runs_options_keep_it_on_the_fnapi_runner_with_nothing_left_behind(prism_tries, tmp_path, monkeypatch,
                                                                                   args):
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    run_a_grouping(pipeline_options(args))
    assert prism_tries == []
    assert os.listdir(tmp_path) == []
