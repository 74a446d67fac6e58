"""`llavaforge report`: one self-contained HTML page that shows what a run produced."""

from __future__ import annotations

from llavaforge.report.collect import ReportError
from llavaforge.report.render import ReportResult, default_report_path, render_report

__all__ = ["ReportError", "ReportResult", "default_report_path", "published_run_dir", "render_report"]


def published_run_dir(prefix: str) -> str:
    """The run folder an output prefix publishes. Today a prefix is one run folder."""
    return prefix
