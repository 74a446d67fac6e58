"""Dataflow: the Beam flags of a GPU deployment, and per-stage GPU resource hints.

Deployment settings are NOT part of the recipe: the recipe says what a run computes (its
hash decides what nightly runs reprocess); where it runs is this config.

Two ways to give the model stages a GPU:
- `gpu_placement: all_workers`: every worker gets the accelerator
  (`--dataflow_service_options=worker_accelerator=...`). Simple; CPU stages pay for GPUs.
- `gpu_placement: gpu_stages` (right fitting): only the model stages carry the resource
  hints `accelerator` and `min_ram`; read, decode, dedup and write run on `machine_type`.
  The pipeline reads the hints from the `--gpu_stage_accelerator` / `--gpu_stage_min_ram`
  flags (`runners.options.GpuStageOptions`) and applies them with `with_gpu_hints`.

    python -m llavaforge.runners.dataflow deploy/dataflow.yaml   # prints the flags
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, Literal, Optional, Sequence

import apache_beam as beam
import fsspec
import yaml
from apache_beam.options.pipeline_options import PipelineOptions
from pydantic import Field, model_validator

from llavaforge.config.base import StrictModel
from llavaforge.runners.options import GpuStageOptions, flags_for_command_substitution

# Accelerator -> machine family it attaches to on Compute Engine (Dataflow refuses others).
GPU_MACHINE_FAMILIES = {
    "nvidia-tesla-t4": "n1", "nvidia-tesla-v100": "n1", "nvidia-tesla-p100": "n1", "nvidia-tesla-p4": "n1",
    "nvidia-l4": "g2", "nvidia-tesla-a100": "a2", "nvidia-a100-80gb": "a2", "nvidia-h100-80gb": "a3",
}


class DataflowConfig(StrictModel):
    project: str = Field(default="", description="Google Cloud project that runs the job.")
    region: str = Field(default="us-central1", description="Dataflow region.")
    temp_location: str = Field(default="", description="gs:// folder for temporary files.")
    staging_location: Optional[str] = Field(default=None, description="gs:// folder for staged files (default: temp_location).")
    job_name: Optional[str] = Field(default=None, description="Dataflow job name (default: Beam's generated name).")
    sdk_container_image: Optional[str] = Field(
        default=None, description="Worker image built from deploy/Dockerfile (llavaforge and CUDA inside).")
    setup_file: Optional[str] = Field(
        default=None, description="setup.py to install llavaforge on workers; not needed with sdk_container_image.")
    machine_type: str = Field(default="n1-standard-8", description="Machine type of the (CPU) workers.")
    disk_size_gb: int = Field(default=100, ge=10, description="Worker boot disk, GB (images, models, container).")
    max_num_workers: int = Field(default=4, ge=1, description="Autoscaling limit.")
    gpu_type: Optional[str] = Field(
        default="nvidia-tesla-t4", description=f"Accelerator of the model stages, one of {sorted(GPU_MACHINE_FAMILIES)}; null: no GPU.")
    gpu_count: int = Field(default=1, ge=1, description="Accelerators per worker that has them.")
    gpu_placement: Literal["gpu_stages", "all_workers"] = Field(
        default="gpu_stages", description="gpu_stages: resource hints on the model stages only (right fitting); "
                                          "all_workers: every worker gets the accelerator.")
    gpu_stage_min_ram: str = Field(default="16GB", description="min_ram resource hint of the model stages (gpu_stages).")
    one_sdk_process_per_worker: bool = Field(
        default=True, description="One SDK process per worker VM (experiment no_use_multiple_sdk_containers), "
                                  "so each GPU holds one copy of each model.")

    @model_validator(mode="after")
    def _gpu_fits_machine(self) -> "DataflowConfig":
        if self.gpu_type is None:
            return self
        if self.gpu_type not in GPU_MACHINE_FAMILIES:
            raise ValueError(f"gpu_type {self.gpu_type!r} is not one of {sorted(GPU_MACHINE_FAMILIES)}")
        family = GPU_MACHINE_FAMILIES[self.gpu_type]
        if self.gpu_placement == "all_workers" and not self.machine_type.startswith(family + "-"):
            raise ValueError(f"machine_type {self.machine_type!r} cannot carry gpu_type {self.gpu_type!r} "
                             f"(needs a {family}-* machine)")
        return self

    @property
    def accelerator(self) -> Optional[str]:
        if self.gpu_type is None:
            return None
        return f"type:{self.gpu_type};count:{self.gpu_count};install-nvidia-driver"


def gpu_stage_hints(options: PipelineOptions) -> dict[str, str]:
    """The resource hints for model stages from the pipeline's flags (empty: none set)."""
    view = options.view_as(GpuStageOptions)
    hints = {"accelerator": view.gpu_stage_accelerator, "min_ram": view.gpu_stage_min_ram}
    return {k: v for k, v in hints.items() if v}


def with_gpu_hints(stage: beam.PTransform, hints: dict[str, str]) -> beam.PTransform:
    """`stage` carrying the model-stage hints (its subtransforms inherit them)."""
    return stage.with_resource_hints(**hints) if hints else stage


def dataflow_args(config: DataflowConfig) -> list[str]:
    """Beam flags of a Dataflow run with this config."""
    args = ["--runner=DataflowRunner", f"--project={config.project}", f"--region={config.region}",
            f"--temp_location={config.temp_location}", f"--machine_type={config.machine_type}",
            f"--disk_size_gb={config.disk_size_gb}", f"--max_num_workers={config.max_num_workers}",
            "--experiments=use_runner_v2"]
    optional = {"staging_location": config.staging_location, "job_name": config.job_name,
                "sdk_container_image": config.sdk_container_image, "setup_file": config.setup_file}
    args += [f"--{name}={value}" for name, value in optional.items() if value]
    if config.accelerator and config.gpu_placement == "all_workers":
        args.append(f"--dataflow_service_options=worker_accelerator={config.accelerator}")
    elif config.accelerator:
        args += [f"--gpu_stage_accelerator={config.accelerator}", f"--gpu_stage_min_ram={config.gpu_stage_min_ram}"]
    if config.accelerator and config.one_sdk_process_per_worker:
        args.append("--experiments=no_use_multiple_sdk_containers")
    return args


def load_config(path: str) -> DataflowConfig:
    with fsspec.open(path, "r") as f:
        data: dict[str, Any] = yaml.safe_load(f) or {}
    return DataflowConfig.model_validate(data)


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m llavaforge.runners.dataflow",
                                description="print the Beam flags of a Dataflow run from a YAML DataflowConfig")
    p.add_argument("config", help="YAML file with DataflowConfig fields (see deploy/dataflow.yaml)")
    args = p.parse_args(argv)
    print(flags_for_command_substitution(dataflow_args(load_config(args.config))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
