"""The command line starts without loading what only some commands need: Beam, torch and
pyarrow are imported by the commands that run a job or read tables, and transformers' model
code only where a model loads (a worker), not where the graph is built (the driver)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SAMPLE_SHARD = Path(__file__).resolve().parent.parent / "examples" / "sample-000.tar"
MODULES = ("apache_beam", "torch", "pyarrow", "webdataset", "transformers.modeling_utils",
           "transformers.processing_utils")


def loaded_after(statement: str) -> set[str]:
    code = f"import sys; {statement}; print(' '.join(m for m in {MODULES!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return set(out.split())


def test_help_loads_no_heavy_library():
    assert loaded_after("import llavaforge.cli; llavaforge.cli.parser()") == set()


def test_verify_and_status_need_neither_beam_nor_torch():
    assert loaded_after("import llavaforge.jobs.verify, llavaforge.jobs.status") <= {"pyarrow"}


def test_building_a_run_graph_loads_no_model_code(tmp_path):
    # A dry run builds the whole graph of the `tiny` preset (every model role) and stops: what
    # a driver or a Dataflow launcher does before workers load the models.
    argv = ["-q", "run", "--input", str(SAMPLE_SHARD), "--output", str(tmp_path / "out"),
            "--set", "preset=tiny", "--dry-run"]
    loaded = loaded_after(f"import llavaforge.cli; llavaforge.cli.main({argv!r})")
    assert {"apache_beam", "torch"} <= loaded  # Beam's RunInference imports torch itself
    assert not loaded & {"transformers.modeling_utils", "transformers.processing_utils"}
