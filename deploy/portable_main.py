"""One `llavaforge nightly` run on llavaforge's portable job service (llavaforge.runners.portable),
which this script starts for the run and stops after it: nothing has to be running beforehand.
Airflow's local DAG (airflow_dag.py) runs it with BeamRunPythonPipelineOperator.

    python deploy/portable_main.py [--workers N] NIGHTLY-OPTIONS [BEAM FLAGS]

`--workers`: SDK worker processes per stage (default 2); every other argument goes to
`llavaforge nightly`. The service's flags come last, so they win over a `--runner` given before.
"""

import argparse
import sys

from llavaforge.cli import main
from llavaforge.runners.portable import job_service


def run(argv: list[str]) -> int:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--workers", type=int, default=2)
    args, nightly_args = p.parse_known_args(argv)
    with job_service(args.workers) as service:
        return main(["nightly", *nightly_args, *service.flags])


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
