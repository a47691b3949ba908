"""``coderun report`` and ``coderun baseline`` (the report options of ``coderun run``
are in sandbox/cli/run_outputs.py).

Exit codes: 0 ok, 1 no such session (or it is still running), 2 usage error (a bad
baseline file too), 3 (``NEW_ENDPOINT_STATUS``) ``--fail-on-new`` found an endpoint that
is not in the baseline. docs/reports.md.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from sandbox.cli.common import NotFound, session_folder
from sandbox.cli.run_outputs import FORMATS, baseline_file, check_format
from sandbox.textout import echo_exact
from snitch.core.atomic import write_atomic
from snitch.core.safetext import safe
from snitch.review.logquery import session_running
from snitch.review.report import render
from snitch.review.report.baseline import (
    NEW_ENDPOINT_STATUS,
    Baseline,
    BaselineError,
    diff,
    dump_baseline,
    from_report,
    load_baseline,
    mark_new,
)
from snitch.review.report.build import session_report
from snitch.review.report.model import Report


def _ended_report(session: str | None) -> Report:
    folder = session_folder(session)
    if session_running(folder):
        raise NotFound(f"session {folder.name} is still running: report it once it has ended")
    return session_report(folder)


def _write(path: Path, text: str) -> None:
    try:
        write_atomic(path, text)
    except OSError as exc:
        raise click.ClickException(f"cannot write {safe(path)}: {exc}") from exc


# -- coderun report --------------------------------------------------------------------------


@click.command("report")
@click.argument("session", required=False)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    help="json, markdown or sarif (default: from -o's suffix, else markdown).",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the report to FILE (default: standard output).",
)
@click.option(
    "--baseline",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Mark the endpoints that are not in this baseline file as new.",
)
@click.option(
    "--sarif-location",
    metavar="FILE",
    help="SARIF: place every result at this file of the repository (e.g. the policy "
    "file, relative to the repository's root): GitHub code scanning shows only results "
    "placed in a file.",
)
def report_command(session: str | None, fmt: str | None, output: Path | None,
                   baseline: Path | None, sarif_location: str | None) -> None:  # fmt: skip
    """Report what an ended SESSION (the latest by default) contacted, what was denied
    and what files it opened."""
    chosen = check_format(output, fmt, "--format")
    known = baseline_file(baseline) if baseline is not None else None
    report = _ended_report(session)
    if known is not None:
        mark_new(report, known)
    text = render(report, chosen, sarif_location)
    if output is None:
        echo_exact(text)
    else:
        _write(output, text)
        click.echo(f"wrote {safe(output)}", err=True)


# -- coderun baseline ------------------------------------------------------------------------


@click.group("baseline")
def baseline_group() -> None:
    """Save the endpoints a run contacted; compare runs with them."""


def _baseline_of(what: str) -> Baseline:
    """A baseline file, or the endpoints of an ended session (id or unique prefix)."""
    path = Path(what)
    if path.is_file():
        try:
            return load_baseline(path)
        except BaselineError as exc:
            raise click.UsageError(str(exc)) from exc
    report = _ended_report(what)
    return from_report(report, f"session {report.session.id}")


@baseline_group.command("save")
@click.argument("session")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
def baseline_save(session: str, file: Path) -> None:
    """Save every endpoint SESSION tried (allowed or denied) into FILE."""
    base = _baseline_of_session(session)
    _write(file, dump_baseline(base))
    click.echo(f"wrote {len(base.endpoints)} endpoints to {safe(file)}", err=True)


def _baseline_of_session(session: str) -> Baseline:
    report = _ended_report(session)
    return from_report(report, f"session {report.session.id}")


@baseline_group.command("diff")
@click.argument("a")
@click.argument("b")
@click.option("--json", "as_json", is_flag=True, help="One JSON object: new and gone.")
@click.option(
    "--fail-on-new",
    is_flag=True,
    help=f"Exit {NEW_ENDPOINT_STATUS} when B has an endpoint A has not.",
)
def baseline_diff(a: str, b: str, as_json: bool, fail_on_new: bool) -> None:
    """Compare A with B (each a baseline file or a session): lines "+ ENDPOINT" for
    what only B has, "- ENDPOINT" for what only A has."""
    result = diff(_baseline_of(a), _baseline_of(b))
    if as_json:
        click.echo(json.dumps({
            "new": [{"name": k.name, "port": k.port, "proto": k.proto} for k in result.new],
            "gone": [{"name": k.name, "port": k.port, "proto": k.proto} for k in result.gone],
        }, sort_keys=True))  # fmt: skip
    else:
        for key in result.new:
            click.echo(f"+ {safe(key)}")
        for key in result.gone:
            click.echo(f"- {safe(key)}")
        click.echo(f"{len(result.new)} new, {len(result.gone)} gone", err=True)
    if fail_on_new and result.new:
        raise SystemExit(NEW_ENDPOINT_STATUS)
