"""One `llavaforge nightly` run on llavaforge's portable job service (llavaforge.runners.portable),
which this script starts for the run and stops after it: nothing has to be running beforehand.
Airflow's local DAG (airflow_dag.py) runs it with BeamRunPythonPipelineOperator.

    python deploy/portable_main.py NIGHTLY-OPTIONS [BEAM FLAGS]

Every argument goes to `llavaforge nightly`. The service's flags come last, so they win over a
`--runner` given before.
"""

import sys

from llavaforge.cli import main
from llavaforge.runners.portable import job_service


def run(argv: list[str]) -> int:
    with job_service() as service:
        return main(["nightly", *argv, *service.flags])


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
