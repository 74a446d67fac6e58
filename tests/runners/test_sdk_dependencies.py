"""The driver of a portable run or a Dataflow launch leaves no folder of SDK dependencies behind
(sdk_dependencies.py): an empty one goes at once, one whose files the job's artifacts point at
stays until the process ends."""

from __future__ import annotations

import os

from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.transforms import environments

from llavaforge.runners.portable import portable_args
from llavaforge.runners.sdk_dependencies import remove_dependency_folders
from tests.conftest import run_python

# Beam's cache of downloaded requirements: one folder, by its name, that every listing reuses.
REQUIREMENTS_CACHE = "beam-requirements-cache"


def test_an_empty_dependency_folder_is_removed_at_once(tmp_path, monkeypatch):
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    remove_dependency_folders()
    remove_dependency_folders()  # idempotent: one wrapper
    assert environments.python_sdk_dependencies(PipelineOptions(portable_args("localhost:1"))) == []
    assert os.listdir(tmp_path) == [REQUIREMENTS_CACHE]


LIST_WITH_A_PACKAGE = """
import os, sys, tempfile
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.transforms import environments
from llavaforge.runners.sdk_dependencies import remove_dependency_folders
tempfile.tempdir, package = sys.argv[1], sys.argv[2]
remove_dependency_folders()
artifacts = environments.python_sdk_dependencies(PipelineOptions([f"--extra_package={package}"]))
paths = [environments.beam_runner_api_pb2.ArtifactFilePayload.FromString(a.type_payload).path for a in artifacts]
assert paths and all(os.path.exists(p) for p in paths), paths  # there while the job may be staged
print(sorted(set(os.listdir(tempfile.tempdir)) - {"beam-requirements-cache"}))
"""


def test_a_folder_holding_staged_files_stays_until_the_process_ends(tmp_path):
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    package = tmp_path / "extra-1.0.tar.gz"
    package.write_bytes(b"a package")
    listed = run_python(LIST_WITH_A_PACKAGE, str(temporary), str(package), timeout=120).stdout
    assert listed.startswith("['tmp")  # one folder, while the process ran
    assert os.listdir(temporary) == [REQUIREMENTS_CACHE]
