"""Airflow DAG examples for llavaforge nightly runs (apache-airflow-providers-google and
-apache-beam). Not imported by llavaforge; copy into your DAGs folder and edit the names.

Both run at 02:00 UTC, one run at a time (two nightly runs on one output prefix are not
coordinated), and give the run the date it runs on, in UTC: `{{ data_interval_end | ds }}`,
the date cron and Cloud Scheduler runs get (`llavaforge nightly`'s default). Not `{{ ds }}`:
with Airflow 2's daily intervals that is the day before.
"""

import pendulum
from airflow import DAG
from airflow.providers.apache.beam.operators.beam import BeamRunPythonPipelineOperator
from airflow.providers.google.cloud.operators.dataflow import DataflowStartFlexTemplateOperator

PROJECT, REGION, BUCKET = "my-project", "us-central1", "gs://my-bucket"
IMAGE = f"{REGION}-docker.pkg.dev/{PROJECT}/llavaforge/llavaforge:0.1.0"
# A llavaforge checkout on the Airflow worker, set up once with ./scripts/setup.sh (its .venv).
LLAVAFORGE = "/srv/llavaforge"
RUN_DATE = "{{ data_interval_end | ds }}"
NIGHTLY = dict(start_date=pendulum.datetime(2024, 1, 1, tz="UTC"), schedule="0 2 * * *", catchup=False,
               max_active_runs=1)

with DAG("llavaforge_nightly_dataflow", **NIGHTLY) as dataflow_dag:
    DataflowStartFlexTemplateOperator(
        task_id="nightly",
        project_id=PROJECT,
        location=REGION,
        wait_until_finished=True,
        body={"launchParameter": {
            "jobName": "llavaforge-nightly-{{ data_interval_end | ds_nodash }}",
            "containerSpecGcsPath": f"{BUCKET}/templates/llavaforge-nightly.json",
            # the metadata.json parameters, i.e. the `llavaforge nightly` options
            "parameters": {"input": f"{BUCKET}/shards/*.tar", "output": f"{BUCKET}/llava",
                           "recipe": f"{BUCKET}/recipes/nightly.yaml", "date": RUN_DATE,
                           "gpu_stage_accelerator": "type:nvidia-l4;count:1;install-nvidia-driver",
                           "gpu_stage_min_ram": "24GB"},
            "environment": {"tempLocation": f"{BUCKET}/tmp", "sdkContainerImage": IMAGE, "maxWorkers": 8},
        }},
    )

with DAG("llavaforge_nightly_local", **NIGHTLY) as local_dag:
    # llavaforge's portable job service with 2 SDK worker processes: deploy/portable_main.py
    # starts it for the run and stops it after. The checkout's own virtualenv runs it; with
    # py_requirements set the operator would build a fresh virtualenv for every run.
    BeamRunPythonPipelineOperator(
        task_id="nightly",
        runner="PortableRunner",
        py_file=f"{LLAVAFORGE}/deploy/portable_main.py",
        py_interpreter=f"{LLAVAFORGE}/.venv/bin/python",
        pipeline_options={"input": "/data/shards/*.tar", "output": "/data/llava", "date": RUN_DATE,
                          "workers": 2},
    )
