"""Dataflow flags, GPU resource hints, and the job graph built offline (dry run)."""

from __future__ import annotations

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions

from llavaforge.cli import main
from llavaforge.config.recipe import Recipe, load_recipe
from llavaforge.jobs.run import prepare
from llavaforge.pipelines.build import build_pipeline
from llavaforge.runners.dataflow import DataflowConfig, dataflow_args, gpu_stage_hints, with_gpu_hints

ACCELERATOR = "type:nvidia-l4;count:1;install-nvidia-driver"


def config(**changes) -> DataflowConfig:
    return DataflowConfig(**{"project": "llavaforge-test", "temp_location": "gs://llavaforge-test/tmp",
                             "sdk_container_image": "us-docker.pkg.dev/llavaforge-test/r/llavaforge:1",
                             "gpu_type": "nvidia-l4", **changes})


def test_gpu_stages_get_hints_and_cpu_workers_stay_cpu():
    args = dataflow_args(config(machine_type="n1-standard-4"))
    assert f"--gpu_stage_accelerator={ACCELERATOR}" in args and "--gpu_stage_min_ram=16GB" in args
    assert not any(a.startswith("--dataflow_service_options") for a in args)
    assert "--machine_type=n1-standard-4" in args
    assert gpu_stage_hints(PipelineOptions(args)) == {"accelerator": ACCELERATOR, "min_ram": "16GB"}


def test_all_workers_placement_uses_worker_accelerator():
    args = dataflow_args(config(gpu_placement="all_workers", machine_type="g2-standard-8"))
    assert f"--dataflow_service_options=worker_accelerator={ACCELERATOR}" in args
    assert "--experiments=no_use_multiple_sdk_containers" in args
    assert gpu_stage_hints(PipelineOptions(args)) == {}


def test_gpu_on_a_machine_that_cannot_carry_it_names_the_field():
    with pytest.raises(ValueError, match="machine_type 'n1-standard-8' cannot carry gpu_type 'nvidia-l4'"):
        config(gpu_placement="all_workers")


def test_cpu_only_config_has_no_gpu_flags():
    args = dataflow_args(config(gpu_type=None))
    assert not any("accelerator" in a or "sdk_containers" in a for a in args)


MODEL_STAGES_ON_GPU = {"Annotate/Annotate_captioner", "Annotate/Annotate_detector", "Annotate/Annotate_tagger",
                      "Synthesize"}


def dataflow_job(recipe: Recipe, tmp_path):
    """The Dataflow job of a whole run, translated by the Dataflow runner offline (dry run)."""
    from apache_beam.runners.dataflow.internal import apiclient  # noqa: F401 -- the gcp extra is installed

    tmp_path.mkdir(exist_ok=True)
    shard = tmp_path / "s.tar"
    shard.write_bytes(b"")
    launch = prepare("run", recipe, [str(shard)], str(tmp_path / "out"),
                     dataflow_args(config()) + ["--dry_run=True", "--no_auth"])
    pipeline = beam.Pipeline(options=launch.options)
    build_pipeline(pipeline, recipe, [str(shard)], "gs://llavaforge-test/out/run-x", {"run_id": "x"})
    return pipeline, pipeline.run().job


def hinted_stages(job) -> set[str]:
    """Top-level stage (or Annotate role) of every transform the Dataflow job runs on a GPU."""
    environments = job.proto_pipeline.components.environments
    gpu = {env_id for env_id, env in environments.items()
           if env.resource_hints.get("beam:resources:accelerator:v1") == ACCELERATOR.encode()}
    names = {t.unique_name for t in job.proto_pipeline.components.transforms.values() if t.environment_id in gpu}
    return {"/".join(n.split("/")[:2]) if n.startswith("Annotate/") else n.split("/")[0] for n in names}


def test_only_stages_that_load_a_model_on_cuda_run_on_gpu_workers(tmp_path):
    pipeline, job = dataflow_job(load_recipe(None, {"preset": "hub"}), tmp_path)
    assert hinted_stages(job) == MODEL_STAGES_ON_GPU  # OCR, read, decode, dedup, checks and write stay on CPU
    environments = job.proto_pipeline.components.environments
    assert all(e.urn == "beam:env:docker:v1" for e in environments.values())
    options = job.options.get_all_options()
    assert options["machine_type"] == "n1-standard-8" and options["gpu_stage_min_ram"] == "16GB"
    assert options["sdk_container_image"].endswith("llavaforge:1")
    _, job = dataflow_job(Recipe(), tmp_path / "no-models")
    assert hinted_stages(job) == set()  # no model configured: nothing is sent to GPU workers


@pytest.mark.parametrize("runner", ["DataflowRunner", "dataflow", "Dataflow"])  # Beam takes each
def test_dry_run_on_dataflow_translates_prints_the_graph_and_touches_nothing(tmp_path, capsys, monkeypatch, runner):
    pytest.importorskip("apitools")
    from apache_beam.runners.dataflow.dataflow_runner import DataflowRunner

    translated = []
    beam_run = DataflowRunner.run_pipeline
    monkeypatch.setattr(DataflowRunner, "run_pipeline", lambda self, *a, **k: translated.append(1) or beam_run(self, *a, **k))
    shard = tmp_path / "s.tar"
    shard.write_bytes(b"")
    out = tmp_path / "out"
    code = main(["run", "--input", str(shard), "--output", str(out), "--preset", "hub", "--dry_run",
                 *dataflow_args(config()), f"--runner={runner}", "--no_auth"])
    assert code == 0 and not out.exists() and translated == [1]
    printed = capsys.readouterr().out
    hinted = {line.split()[0] for line in printed.splitlines() if "accelerator=" in line}
    assert hinted == MODEL_STAGES_ON_GPU and "Write" in printed and "Publish" in printed


def test_the_vlm_roles_on_cuda_or_vllm_run_on_gpu_workers(tmp_path):
    recipe = load_recipe(None, {"preset": "hub", "annotate.dense_captioner.enabled": True, "verify.enabled": True,
                                "verify.backend": "vllm", "synthesize.task_modes": {"detail": "vlm"}})
    _, job = dataflow_job(recipe, tmp_path)
    assert hinted_stages(job) == MODEL_STAGES_ON_GPU | {"Annotate/Annotate_dense_captioner", "Verify"}
    remote = load_recipe(None, {"preset": "hub", "verify.enabled": True, "verify.backend": "openai",
                                "verify.model": "served"})
    _, job = dataflow_job(remote, tmp_path / "remote")
    assert "Verify" not in hinted_stages(job)  # an endpoint needs no GPU worker
