"""The command line starts without loading what only some commands need: Beam, torch and
pyarrow are imported by the commands that run a job or read tables."""

from __future__ import annotations

import subprocess
import sys


def loaded_after(statement: str) -> set[str]:
    code = f"import sys; {statement}; print(' '.join(m for m in ('apache_beam', 'torch', 'pyarrow', 'webdataset') " \
           f"if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return set(out.split())


def test_help_loads_no_heavy_library():
    assert loaded_after("import llavaforge.cli; llavaforge.cli.parser()") == set()


def test_verify_and_status_need_neither_beam_nor_torch():
    assert loaded_after("import llavaforge.jobs.verify, llavaforge.jobs.status") <= {"pyarrow"}
