"""deploy/: the Flex Template parameters are the `llavaforge nightly` options, and the
scheduler's launch body uses only those parameters."""

from __future__ import annotations

import argparse
import base64
import json
from pathlib import Path

from apache_beam.options.pipeline_options import PipelineOptions

from llavaforge.cli import parser
from llavaforge.runners.dataflow import GpuStageOptions

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


# Options of the command line only: a template launch always runs the job.
DRIVER_ONLY = {"help", "dry_run"}


def nightly_options() -> dict[str, argparse.Action]:
    sub = next(a for a in parser()._actions if isinstance(a, argparse._SubParsersAction))
    return {a.dest: a for a in sub.choices["nightly"]._actions if a.option_strings and a.dest not in DRIVER_ONLY}


def gpu_stage_options() -> set[str]:
    p = argparse.ArgumentParser()
    GpuStageOptions._add_argparse_args(p)
    return {a.dest for a in p._actions if a.dest != "help"}


def metadata_parameters() -> dict[str, dict]:
    return {p["name"]: p for p in json.loads((DEPLOY / "metadata.json").read_text())["parameters"]}


def test_flex_template_parameters_match_the_nightly_cli():
    cli = nightly_options()
    params = metadata_parameters()
    flag_of = {dest: a.option_strings[0].lstrip("-") for dest, a in cli.items()}
    assert set(params) == set(flag_of.values()) | gpu_stage_options()
    for dest, action in cli.items():
        assert params[flag_of[dest]]["isOptional"] is not action.required, dest
        assert params[flag_of[dest]]["helpText"]


def test_reprocess_parameter_accepts_exactly_the_cli_choices():
    import re

    choices = nightly_options()["reprocess"].choices
    (pattern,) = metadata_parameters()["reprocess"]["regexes"]
    assert all(re.match(pattern, c) for c in choices) and not re.match(pattern, "everything")


def test_scheduler_body_launches_the_template_with_known_parameters():
    job = json.loads((DEPLOY / "scheduler-job.json").read_text())
    body = json.loads(base64.b64decode(job["httpTarget"]["body"]))
    assert body == json.loads((DEPLOY / "launch-body.json").read_text())
    assert set(body["launchParameter"]["parameters"]) <= set(metadata_parameters())
    assert job["httpTarget"]["uri"].endswith("/flexTemplates:launch")


def test_gpu_stage_parameters_reach_beam_options():
    options = PipelineOptions(["--gpu_stage_accelerator=type:nvidia-l4;count:1", "--gpu_stage_min_ram=8GB"])
    assert options.view_as(GpuStageOptions).gpu_stage_min_ram == "8GB"
