"""deploy/: the Flex Template parameters are the `llavaforge nightly` options, the scheduler's
launch body uses only those parameters, Airflow and cron runs get the same date and schedule as
Cloud Scheduler's, and the image's build-time check passes here."""

from __future__ import annotations

import argparse
import ast
import base64
import importlib.util
import json
import re
import socket
from pathlib import Path

import pytest
from apache_beam.options.pipeline_options import PipelineOptions

from llavaforge.cli import parser
from llavaforge.runners.options import GpuStageOptions

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


def module_from(path: Path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def airflow_dag() -> ast.Module:
    return ast.parse((DEPLOY / "airflow_dag.py").read_text())


def keyword_values(tree: ast.AST, call_name: str) -> dict[str, ast.expr]:
    (call,) = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", None) == call_name]
    return {k.arg: k.value for k in call.keywords}


def assigned(tree: ast.Module, name: str) -> ast.expr:
    (value,) = [n.value for n in tree.body if isinstance(n, ast.Assign) and getattr(n.targets[0], "id", None) == name]
    return value


def dag_arguments() -> dict[str, ast.expr]:
    """The keyword arguments both DAGs are created with (`NIGHTLY = dict(...)`)."""
    return {k.arg: k.value for k in assigned(airflow_dag(), "NIGHTLY").keywords}


def cron_line() -> str:
    (line,) = [l for l in (DEPLOY / "crontab").read_text().splitlines() if l and not l.startswith("#")]
    return line


def test_airflow_runs_get_the_date_cron_and_scheduler_runs_get():
    code = airflow_dag().body[1:]  # after the docstring
    templates = {n.value for statement in code for n in ast.walk(statement)
                 if isinstance(n, ast.Constant) and isinstance(n.value, str) and "{{" in n.value}
    # the end of the daily interval is the day the run happens (Airflow 2 and 3); `ds` alone is
    # the interval's start in Airflow 2, the day before
    assert templates == {"{{ data_interval_end | ds }}", "llavaforge-nightly-{{ data_interval_end | ds_nodash }}"}
    dataflow_body = keyword_values(airflow_dag(), "DataflowStartFlexTemplateOperator")["body"]
    beam_options = keyword_values(airflow_dag(), "BeamRunPythonPipelineOperator")["pipeline_options"]
    assert all("'date': RUN_DATE" in ast.unparse(options) for options in (dataflow_body, beam_options))
    assert ast.literal_eval(assigned(airflow_dag(), "RUN_DATE")) == "{{ data_interval_end | ds }}"


def test_airflow_and_cron_run_on_cloud_schedulers_schedule_one_at_a_time():
    job = json.loads((DEPLOY / "scheduler-job.json").read_text())
    dag = dag_arguments()
    assert ast.literal_eval(dag["schedule"]) == job["schedule"] == " ".join(cron_line().split()[:5])
    assert job["timeZone"] == "Etc/UTC" and ast.unparse(dag["start_date"]).endswith("tz='UTC')")
    assert ast.literal_eval(dag["max_active_runs"]) == 1


def test_crontab_takes_a_lock():
    assert re.search(r"flock -n \S+ \S+/llavaforge nightly ", cron_line())


def test_portable_main_serves_the_run_and_stops_after(monkeypatch):
    portable_main = module_from(DEPLOY / "portable_main.py")
    seen = {}

    def nightly(argv):
        endpoint = next(a for a in argv if a.startswith("--job_endpoint=")).split("=", 1)[1]
        host, port = endpoint.rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=5):  # the service answers during the run
            seen.update(argv=argv, port=int(port))
        return 0

    monkeypatch.setattr(portable_main, "main", nightly)
    assert portable_main.run(["--workers", "3", "--input", "s.tar", "--output", "out", "--runner=DirectRunner"]) == 0
    argv = seen["argv"]
    assert argv[:5] == ["nightly", "--input", "s.tar", "--output", "out"]
    assert "--sdk_worker_parallelism=3" in argv
    assert argv.index("--runner=PortableRunner") > argv.index("--runner=DirectRunner")  # the last flag wins
    with pytest.raises(OSError):
        socket.create_connection(("localhost", seen["port"]), timeout=1).close()


def test_image_check_runs_every_role_here_and_fails_without_vllm(capsys):
    check_image = module_from(DEPLOY / "check_image.py")
    assert check_image.main([]) == 0
    out = capsys.readouterr().out
    assert all(f"ok    {preset} {role}" in out for role, preset in check_image.VISION_ROLE_PRESETS.items())
    assert "ok    tiny llm" in out and "ok    offline llm weights" in out
    if importlib.util.find_spec("vllm") is None:
        assert check_image.main(["--vllm"]) == 1
        assert "FAIL  hub llm backend" in capsys.readouterr().out
