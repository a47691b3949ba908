"""The report options of ``coderun run`` (``--report FILE``, ``--report-format``,
``--baseline FILE``, ``--fail-on-new``) and what the run does with them after the
command ended. docs/reports.md.

Apart from ``sandbox/cli/report.py`` (the ``report`` and ``baseline`` commands): a run
without these options loads no report code (its log queries, renderers, the rule store).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from snitch.core.grammar import choices
from snitch.core.safetext import safe
from snitch.review.report import ReportFormat, format_for
from snitch.review.report.baseline import NEW_ENDPOINT_STATUS, Baseline, BaselineError

if TYPE_CHECKING:
    from sandbox.session import Session

F = TypeVar("F", bound=Callable[..., Any])
FORMATS = choices(ReportFormat)
RUN_OPTIONS = ("report", "report_format", "baseline", "fail_on_new")


def check_format(path: Path | None, fmt: str | None, hint: str) -> ReportFormat:
    """The report format for ``path`` or ``fmt``; a click error naming ``hint``."""
    try:
        return format_for(path, fmt)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint=hint) from exc


def baseline_file(path: Path) -> Baseline:
    """A baseline file; a click error when it is not one."""
    from snitch.review.report.baseline import load_baseline

    try:
        return load_baseline(path)
    except BaselineError as exc:
        raise click.BadParameter(str(exc), param_hint="--baseline") from exc


def report_options(f: F) -> F:
    """The report and baseline options of ``coderun run``."""
    for option in reversed([
        click.option("--report", type=click.Path(dir_okay=False, path_type=Path),
                     help="After the run, write its report to FILE (format from the "
                     "suffix: .json, .md, .sarif)."),
        click.option("--report-format", type=click.Choice(FORMATS),
                     help="The --report format, whatever the file's suffix."),
        click.option("--baseline", type=click.Path(exists=True, dir_okay=False,
                     path_type=Path), help="Compare the run's endpoints with this baseline "
                     "file (`coderun baseline save`); new ones are marked in the report."),
        click.option("--fail-on-new", is_flag=True,
                     help=f"Exit {NEW_ENDPOINT_STATUS} when the run contacted an endpoint "
                     "that is not in --baseline."),
    ]):  # fmt: skip
        f = option(f)
    return f


@dataclass(frozen=True)
class RunOutputs:
    """What ``coderun run`` does after the command ended: the report, the baseline check."""

    report: Path | None = None
    fmt: ReportFormat = ReportFormat.JSON
    baseline: Baseline | None = None
    fail_on_new: bool = False

    @classmethod
    def take(cls, options: dict[str, Any]) -> RunOutputs:
        """Pop and check the report options (usage errors before anything starts)."""
        report: Path | None = options.pop("report", None)
        fmt: str | None = options.pop("report_format", None)
        baseline_path: Path | None = options.pop("baseline", None)
        fail_on_new: bool = options.pop("fail_on_new", False)
        if fail_on_new and baseline_path is None:
            raise click.UsageError("--fail-on-new needs --baseline FILE")
        if fmt is not None and report is None:
            raise click.UsageError("--report-format needs --report FILE")
        if report is not None and not report.parent.is_dir():
            raise click.BadParameter(f"no folder {safe(report.parent)}", param_hint="--report")
        chosen = check_format(report, fmt, "--report") if report is not None else ReportFormat.JSON
        baseline = baseline_file(baseline_path) if baseline_path is not None else None
        return cls(report, chosen, baseline, fail_on_new)

    @property
    def wanted(self) -> bool:
        return self.report is not None or self.baseline is not None

    def after(self, sessions: list[Session], status: int) -> int:
        """Write the report and compare with the baseline; the exit status to leave with."""
        if not self.wanted:
            return status
        if not sessions:
            click.echo("coderun: no report: the session did not start", err=True)
            return status
        # Start-up time: the report's code loads only for a run that writes one.
        from snitch.core.atomic import write_atomic
        from snitch.review.report import render
        from snitch.review.report.baseline import mark_new
        from snitch.review.report.build import session_report

        report = session_report(sessions[0].dir)
        new = mark_new(report, self.baseline) if self.baseline is not None else []
        if self.report is not None:
            try:
                write_atomic(self.report, render(report, self.fmt))
            except OSError as exc:
                click.echo(f"coderun: cannot write the report {safe(self.report)}: {exc}",
                           err=True)  # fmt: skip
            else:
                click.echo(f"coderun: report written to {safe(self.report)}", err=True)
        if self.baseline is None:
            return status
        for key in new:
            click.echo(f"coderun: new endpoint (not in the baseline): {safe(key)}", err=True)
        if new and self.fail_on_new:
            click.echo(f"coderun: {len(new)} new endpoints: exit {NEW_ENDPOINT_STATUS} (the "
                       f"command exited {status})", err=True)  # fmt: skip
            return NEW_ENDPOINT_STATUS
        return status
