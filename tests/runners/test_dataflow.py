"""Dataflow flags, GPU resource hints, and the job graph built offline (dry run)."""

from __future__ import annotations

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions

from llavaforge.pipelines.build import build_pipeline
from llavaforge.config.recipe import Recipe
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


def test_dataflow_job_graph_builds_offline_with_hints_on_gpu_stage_only(tmp_path):
    pytest.importorskip("apitools", reason="needs apache-beam[gcp] (llavaforge[gcp])")
    from apache_beam.runners.dataflow.internal import apiclient  # noqa: F401 -- the gcp extra is complete

    shard = tmp_path / "s.tar"
    shard.write_bytes(b"")
    options = PipelineOptions(dataflow_args(config()) + ["--dry_run=True", "--no_auth"])
    pipeline = beam.Pipeline(options=options)
    stats = build_pipeline(pipeline, Recipe(), [str(shard)], "gs://llavaforge-test/out", {"run_id": "r"},
                           published_keys=[])
    _ = stats | "GpuStage" >> with_gpu_hints(beam.Map(lambda s: s), gpu_stage_hints(options))
    job = pipeline.run().job
    environments = job.proto_pipeline.components.environments
    hinted = {env_id for env_id, env in environments.items()
              if env.resource_hints.get("beam:resources:accelerator:v1") == ACCELERATOR.encode()}
    assert len(hinted) == 1 and all(e.urn == "beam:env:docker:v1" for e in environments.values())
    transforms = job.proto_pipeline.components.transforms.values()
    assert {t.unique_name for t in transforms if t.environment_id in hinted} == {"GpuStage"}
    assert sum(bool(t.environment_id) for t in transforms) > 10  # the CPU stages run in the default environment
