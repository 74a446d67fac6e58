"""Beam's DirectRunner first tries to run a pipeline on Prism, which it downloads from GitHub; the
fix runs every local run on the FnApiRunner, offline.

Beam 2.77's DirectRunner hands a pipeline to Prism (a Go binary it fetches from GitHub on first
use) when it finds nothing in the graph that Prism is known to mishandle. A llavaforge graph
with no model role qualifies (the model stages' exception handling is on Beam's list), so
`llavaforge run` and `nightly` without a preset went there: offline the download failed, the
try left three empty folders in the temporary folder every run, and the DirectRunner fell back
to the FnApiRunner; online the job ran on Prism, a runner none of `options.mend_local_runner`'s
mends are for, fetched from the network by a command that is meant to run offline. With the
fix the DirectRunner goes straight to the FnApiRunner, as it always did for the presets.
"""

from __future__ import annotations


def keep_direct_runner_offline() -> None:
    """Make the DirectRunner in this process pass Prism by (idempotent)."""
    from apache_beam.runners.direct.direct_runner import SwitchingDirectRunner

    # Beam reads this flag only to pass Prism by (an interactive session's pipelines never go
    # there); it changes nothing else about the run. tests/runners/test_direct_offline.py
    # checks that a Prism-ready graph is not sent to Prism, and that without this it would be.
    SwitchingDirectRunner._is_interactive = True  # noqa: SLF001
