"""Airflow DAG examples for llavaforge nightly runs (apache-airflow-providers-google and
-apache-beam). Not imported by llavaforge; copy into your DAGs folder and edit the names."""

from datetime import datetime

from airflow import DAG
from airflow.providers.apache.beam.operators.beam import BeamRunPythonPipelineOperator
from airflow.providers.google.cloud.operators.dataflow import DataflowStartFlexTemplateOperator

PROJECT, REGION, BUCKET = "my-project", "us-central1", "gs://my-bucket"
IMAGE = f"{REGION}-docker.pkg.dev/{PROJECT}/llavaforge/llavaforge:0.1.0"

with DAG("llavaforge_nightly_dataflow", start_date=datetime(2024, 1, 1), schedule="0 2 * * *",
         catchup=False) as dataflow_dag:
    DataflowStartFlexTemplateOperator(
        task_id="nightly",
        project_id=PROJECT,
        location=REGION,
        wait_until_finished=True,
        body={"launchParameter": {
            "jobName": "llavaforge-nightly-{{ ds_nodash }}",
            "containerSpecGcsPath": f"{BUCKET}/templates/llavaforge-nightly.json",
            # the metadata.json parameters, i.e. the `llavaforge nightly` options
            "parameters": {"input": f"{BUCKET}/shards/*.tar", "output": f"{BUCKET}/llava",
                           "recipe": f"{BUCKET}/recipes/nightly.yaml", "date": "{{ ds }}",
                           "gpu_stage_accelerator": "type:nvidia-l4;count:1;install-nvidia-driver",
                           "gpu_stage_min_ram": "24GB"},
            "environment": {"tempLocation": f"{BUCKET}/tmp", "sdkContainerImage": IMAGE, "maxWorkers": 8},
        }},
    )

with DAG("llavaforge_nightly_local", start_date=datetime(2024, 1, 1), schedule="0 2 * * *",
         catchup=False) as local_dag:
    # Any non-Dataflow runner: here the portable job service (python -m llavaforge.runners.portable).
    BeamRunPythonPipelineOperator(
        task_id="nightly",
        runner="PortableRunner",
        py_file="/opt/llavaforge/deploy/flex_main.py",
        py_options=[],
        pipeline_options={"input": "/data/shards/*.tar", "output": "/data/llava", "date": "{{ ds }}",
                          "job_endpoint": "localhost:8099",
                          "environment_type": "beam:env:harness_subprocess_python:v1",
                          "environment_config": "python -m apache_beam.runners.worker.sdk_worker_main",
                          "sdk_worker_parallelism": "2"},
        py_requirements=[],
        py_system_site_packages=True,
    )
