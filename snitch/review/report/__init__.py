"""Run reports (``coderun run --report``, ``coderun report``) and baselines.

``build.session_report(folder)`` makes the one report model (``model.Report``) from a
session's log; ``render(report, fmt)`` writes it as JSON (``report.schema.json``),
Markdown or SARIF 2.1.0. docs/reports.md describes them.
"""

from __future__ import annotations

import enum
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from snitch.review.report.model import Report


class ReportFormat(enum.StrEnum):
    JSON = "json"
    MARKDOWN = "markdown"
    SARIF = "sarif"


SUFFIXES = {".json": ReportFormat.JSON, ".md": ReportFormat.MARKDOWN,
            ".markdown": ReportFormat.MARKDOWN, ".sarif": ReportFormat.SARIF}  # fmt: skip


def format_for(path: Path | None, fmt: str | None) -> ReportFormat:
    """The format asked for, else the one the file's suffix says; ValueError when
    neither says one."""
    if fmt is not None:
        return ReportFormat(fmt)
    if path is not None and path.suffix.lower() in SUFFIXES:
        return SUFFIXES[path.suffix.lower()]
    if path is None:
        return ReportFormat.MARKDOWN
    raise ValueError(f"cannot tell the report format from {path.name!r}: name it .json, .md "
                     "or .sarif, or give --report-format")  # fmt: skip


def render(report: Report, fmt: ReportFormat, sarif_location: str | None = None) -> str:
    """The report in ``fmt``; ``sarif_location``: the repository file SARIF results are
    placed at (code scanning needs one)."""
    # Start-up time: `coderun run` checks --report-format with this package; the
    # renderers (importlib.metadata, email) load only when a report is written.
    if fmt is ReportFormat.SARIF:
        from snitch.review.report.sarif import render_sarif

        return render_sarif(report, sarif_location)
    if fmt is ReportFormat.MARKDOWN:
        from snitch.review.report.markdown import render_markdown

        return render_markdown(report)
    from snitch.review.report.jsonout import render_json

    return render_json(report)
