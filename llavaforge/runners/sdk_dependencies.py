"""Beam's driver makes a temporary folder for the SDK's dependencies of every portable run and
never removes it; the fix removes it.

For an environment whose workers are started from its description (a job service's worker
processes, Dataflow's containers), Beam 2.77 lists the SDK's dependencies
(`environments.python_sdk_dependencies`): it makes a folder with `mkdtemp` for the files it may
stage (a requirements file, extra packages, the pickled main session, the list of the driver's
packages) and returns artifacts that point at them. A llavaforge run on its job service stages
none of those (the workers run the driver's interpreter), so every such run left an empty folder
in the temporary folder; a Dataflow launch or dry run left one holding the pickled main session
and the list of packages. An empty folder is now removed once the list is made, one holding files
when the process ends: the artifacts point at the files until the runner has staged them, which
it does before it returns from starting the job.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile


def remove_dependency_folders() -> None:
    """Make the SDK's dependency listing remove the folder it makes: at once when it stayed empty,
    else when this process ends (idempotent)."""
    from apache_beam.transforms import environments

    beam_listing = environments.python_sdk_dependencies
    if getattr(beam_listing, "removes_its_folder", False):
        return

    def python_sdk_dependencies(options, tmp_dir=None):
        if tmp_dir is not None:  # the caller's folder, the caller's to remove
            return beam_listing(options, tmp_dir)
        folder = tempfile.mkdtemp()
        try:
            return beam_listing(options, folder)
        finally:
            try:
                os.rmdir(folder)
            except OSError:  # files the artifacts point at until the job is staged
                atexit.register(shutil.rmtree, folder, ignore_errors=True)

    python_sdk_dependencies.removes_its_folder = True
    environments.python_sdk_dependencies = python_sdk_dependencies
