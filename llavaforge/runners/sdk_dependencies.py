"""Beam's driver makes a temporary folder for the SDK's dependencies of every portable run and
never removes it; the fix removes it when nothing was put in it.

For an environment whose workers are started from its description (a job service's worker
processes, Dataflow's containers), Beam 2.77 lists the SDK's dependencies
(`environments.python_sdk_dependencies`): it makes a folder with `mkdtemp` for the files it may
stage (a requirements file, extra packages, the pickled main session, the list of the driver's
packages) and returns artifacts that point at them. A llavaforge run on its job service stages
none of those (the workers run the driver's interpreter), so every such run left an empty folder
in the temporary folder. An empty folder is now removed once the list is made; one holding files
stays, because the artifacts point at them until the job is staged.
"""

from __future__ import annotations

import contextlib
import os
import tempfile


def remove_empty_dependency_folders() -> None:
    """Make the SDK's dependency listing remove the folder it made when it stayed empty, in this
    process (idempotent)."""
    from apache_beam.transforms import environments

    beam_listing = environments.python_sdk_dependencies
    if getattr(beam_listing, "removes_empty_folder", False):
        return

    def python_sdk_dependencies(options, tmp_dir=None):
        if tmp_dir is not None:  # the caller's folder, the caller's to remove
            return beam_listing(options, tmp_dir)
        folder = tempfile.mkdtemp()
        try:
            return beam_listing(options, folder)
        finally:
            with contextlib.suppress(OSError):  # not empty: staged files the artifacts point at
                os.rmdir(folder)

    python_sdk_dependencies.removes_empty_folder = True
    environments.python_sdk_dependencies = python_sdk_dependencies
