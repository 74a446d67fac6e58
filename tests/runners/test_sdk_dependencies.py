"""The driver of a portable run leaves no empty folder behind (sdk_dependencies.py), and keeps
one that holds files the job's artifacts point at."""

from __future__ import annotations

import os

from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.transforms import environments

from llavaforge.runners.portable import portable_args
from llavaforge.runners.sdk_dependencies import remove_empty_dependency_folders


# Beam's cache of downloaded requirements: one folder, by its name, that every listing reuses.
REQUIREMENTS_CACHE = "beam-requirements-cache"


def listed_files(artifacts) -> list[str]:
    return [environments.beam_runner_api_pb2.ArtifactFilePayload.FromString(a.type_payload).path for a in artifacts]


def test_an_empty_dependency_folder_is_removed_and_one_with_files_kept(tmp_path, monkeypatch):
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    monkeypatch.setattr("tempfile.tempdir", str(temporary))
    remove_empty_dependency_folders()
    remove_empty_dependency_folders()  # idempotent: one wrapper
    assert environments.python_sdk_dependencies(PipelineOptions(portable_args("localhost:1"))) == []
    assert os.listdir(temporary) == [REQUIREMENTS_CACHE]

    package = tmp_path / "extra-1.0.tar.gz"
    package.write_bytes(b"not empty")
    artifacts = environments.python_sdk_dependencies(
        PipelineOptions([*portable_args("localhost:1"), f"--extra_package={package}"]))
    [folder] = set(os.listdir(temporary)) - {REQUIREMENTS_CACHE}
    assert all(os.path.exists(path) for path in listed_files(artifacts))
    assert any(path.startswith(str(temporary / folder)) for path in listed_files(artifacts))
