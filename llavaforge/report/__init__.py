"""`llavaforge report`: one self-contained HTML page that shows what a run produced."""

from __future__ import annotations

from llavaforge.report.collect import ReportError
from llavaforge.report.render import ReportResult, default_report_path, render_report

__all__ = ["ReportError", "ReportResult", "default_report_path", "published_run_dir", "render_report"]


def published_run_dir(target: str) -> str:
    """The run folder to report on: the one an output prefix publishes now (a nightly prefix:
    its latest run), or `target` itself when it is a run folder."""
    from llavaforge.jobs.ledger import published_run_dir as latest_published
    from llavaforge.jobs.prefix import OutputPrefix

    return latest_published(target) if OutputPrefix.of(target).marker() is not None else target
