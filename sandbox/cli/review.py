"""``coderun sessions``, ``coderun log`` and ``coderun export``: reviewing what runs did
(``coderun rules from-session`` is in sandbox/cli/rules.py).

Exit codes: 0 ok, 1 no such session, 2 usage error, 3 the rule store is unusable.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from pathlib import Path

import click

from sandbox import paths
from sandbox.cli.common import open_store, session_folder
from sandbox.records import (
    SESSION_HEADER,
    SUMMARY_HEADER,
    all_logs,
    follow,
    format_entry,
    format_session,
    format_summary,
    list_sessions,
)
from sandbox.textout import echo_exact, exact_output
from snitch.core.grammar import Verdict, choices
from snitch.core.logentry import EntryKind, LogEntry
from snitch.core.model import Proto
from snitch.core.safetext import safe
from snitch.core.session_dir import SessionDir
from snitch.review.export import FORMATS, ExportError, ExportOptions, export
from snitch.review.export.proposal import propose_rules
from snitch.review.logquery import (
    CSV_FIELDS,
    CsvRows,
    Filter,
    csv_row,
    filter_entries,
    parse_when,
    prune,
    resolutions,
    summarize,
)

VERDICTS = choices(Verdict)  # deny includes rebind
KINDS = choices(EntryKind)
# What ``entry_proto`` says: a protocol, or http for a request seen through interception.
PROTOS = [p for p in choices(Proto) if p != Proto.ANY] + [str(EntryKind.HTTP)]


# -- sessions --------------------------------------------------------------------------------


@click.command("sessions")
@click.option("--json", "as_json", is_flag=True, help="One JSON object a line (stable).")
@click.option("--limit", type=click.IntRange(min=1), help="Only the latest N sessions.")
def sessions(as_json: bool, limit: int | None) -> None:
    """List recorded runs with their verdict counts, oldest first."""
    recs = list_sessions(paths.sessions_dir())
    if limit:
        recs = recs[-limit:]
    if not as_json:
        click.echo(SESSION_HEADER)
    for rec in recs:
        click.echo(json.dumps(rec, sort_keys=True) if as_json else format_session(rec))


# -- log -------------------------------------------------------------------------------------


class _DefaultGroup(click.Group):
    """A group whose first argument, unless it names a subcommand, goes to ``show``."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if not args or (args[0] not in self.commands and args[0] not in ("-h", "--help")):
            args = ["show", *args]
        return super().parse_args(ctx, args)


@click.group("log", cls=_DefaultGroup)
def log() -> None:
    """Show a session's traffic log (``coderun log [SESSION]``), or prune old logs."""


def _when(value: str | None, what: str) -> float | None:
    if value is None:
        return None
    try:
        return parse_when(value)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint=what) from e


def _print(entries: Iterable[LogEntry], as_json: bool, as_csv: bool, live: bool) -> None:
    """Entries as text (escaped), JSON (exact: its encoder escapes) or CSV (exact to a
    pipe or file, escaped on a terminal)."""
    if as_csv:
        writer = CsvRows(sys.stdout)
        with exact_output():
            writer.writerow(CSV_FIELDS)
    for e in entries:
        if as_csv:
            with exact_output():
                writer.writerow(csv_row(e))
        else:
            click.echo(json.dumps(e.to_dict(), sort_keys=True) if as_json else format_entry(e))
        if live:
            sys.stdout.flush()


@log.command("show")
@click.argument("session", required=False)
@click.option(
    "--verdict",
    multiple=True,
    type=click.Choice(VERDICTS),
    help="Repeatable; deny includes rebind (a name that led inside).",
)
@click.option("--host", "hosts", multiple=True, metavar="GLOB", help="On names, qname, dst.")
@click.option("--path", "paths", multiple=True, metavar="GLOB", help="File lines by path.")
@click.option(
    "--exe",
    "exes",
    multiple=True,
    metavar="GLOB",
    help="The asking program's path in the sandbox (repeatable).",
)
@click.option("--proto", type=click.Choice(PROTOS))
@click.option("--port", type=click.IntRange(0, 65535))
@click.option("--kind", "kinds", multiple=True, type=click.Choice(KINDS), help="Repeatable.")
@click.option("--since", help="10m, 2h, 14:30, 2024-05-01T14:30 or a Unix time.")
@click.option("--until", help="Same forms as --since.")
@click.option("-f", "--follow", "follow_", is_flag=True, help="Keep reading until it ends.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object a line (stable).")
@click.option("--csv", "as_csv", is_flag=True, help="CSV with a header line.")
@click.option("--summary", is_flag=True, help="Counts and bytes by host.")
@click.option("--pcap", type=click.Path(dir_okay=False, path_type=Path), help="Write flows.")
def show(
    session: str | None,
    verdict: tuple[str, ...],
    hosts: tuple[str, ...],
    paths: tuple[str, ...],
    exes: tuple[str, ...],
    proto: str | None,
    port: int | None,
    kinds: tuple[str, ...],
    since: str | None,
    until: str | None,
    follow_: bool,
    as_json: bool,
    as_csv: bool,
    summary: bool,
    pcap: Path | None,
) -> None:
    """Show SESSION's flows, lookups and HTTP requests (the latest session by default)."""
    if as_json and as_csv:
        raise click.UsageError("--json and --csv exclude each other")
    if follow_ and (summary or pcap):
        raise click.UsageError("--follow works with the text, --json and --csv outputs")
    if summary and as_csv:
        raise click.UsageError("--summary is text or --json")
    filt = Filter(
        verdicts=frozenset(verdict),
        hosts=hosts,
        proto=proto,
        port=port,
        since=_when(since, "--since"),
        until=_when(until, "--until"),
        kinds=frozenset(kinds),
        paths=paths,
        exes=exes,
    )
    folder = session_folder(session)
    source = follow(folder) if follow_ else SessionDir(folder).read_log()
    entries = filter_entries(source, filt)
    if pcap is not None:
        # Start-up time: only `log --pcap` needs the pcap writer.
        from snitch.review.pcap import write_pcap

        try:
            n = write_pcap(entries, pcap)
        except ImportError as e:
            raise click.ClickException(f"--pcap needs scapy (pip install scapy): {e}") from e
        click.echo(f"wrote {n} flows to {safe(pcap)}", err=True)
    elif summary:
        rows = summarize(entries)
        if not as_json:
            click.echo(SUMMARY_HEADER)
        for s in rows:
            click.echo(json.dumps(s.to_dict(), sort_keys=True) if as_json else format_summary(s))
    else:
        try:
            _print(entries, as_json, as_csv, follow_)
        except KeyboardInterrupt:  # the way out of --follow when a run never records its end
            sys.exit(130)


@log.command("prune")
@click.option("--keep-days", type=click.FloatRange(min=0), envvar="CODERUN_LOG_KEEP_DAYS")
@click.option("--max-mb", type=click.FloatRange(min=0), envvar="CODERUN_LOG_MAX_MB")
@click.option("--dry-run", is_flag=True, help="Only say what would be removed.")
def prune_command(keep_days: float | None, max_mb: float | None, dry_run: bool) -> None:
    """Remove whole sessions older than --keep-days, then the oldest until all sessions
    take at most --max-mb. Running sessions are kept. Defaults from
    CODERUN_LOG_KEEP_DAYS and CODERUN_LOG_MAX_MB."""
    if keep_days is None and max_mb is None:
        raise click.UsageError("give --keep-days and/or --max-mb")
    max_bytes = None if max_mb is None else int(max_mb * 1024 * 1024)
    removed = prune(paths.sessions_dir(), keep_days, max_bytes, dry_run=dry_run)
    verb = "would remove" if dry_run else "removed"
    for sid in removed:
        click.echo(f"{verb} {sid}")
    click.echo(f"{verb} {len(removed)} sessions", err=True)


# -- export ----------------------------------------------------------------------------------


def _labels(items: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r} is not KEY=VALUE", param_hint="--label")
        out[key] = value
    return out or {"app": "coderun"}


@click.command("export")
@click.option("--format", "fmt", type=click.Choice(list(FORMATS)), required=True)
@click.option("--rules", "use_rules", is_flag=True, help="The store's enabled rules (default).")
@click.option("--session", "session_id", help="The rules from-session proposes for a run.")
@click.option("-o", "--output", type=click.Path(path_type=Path), help="File (opensnitch: dir).")
@click.option("--resolver", "resolvers", multiple=True, help="DNS server address to allow.")
@click.option("--name", default="coderun", show_default=True, help="Table / policy name.")
@click.option("--label", "labels", multiple=True, help="KEY=VALUE pod label (cilium, k8s).")
@click.option("--namespace", help="Namespace of the policy (cilium, k8s).")
def export_command(
    fmt: str,
    use_rules: bool,
    session_id: str | None,
    output: Path | None,
    resolvers: tuple[str, ...],
    name: str,
    labels: tuple[str, ...],
    namespace: str | None,
) -> None:
    """Write rules as a firewall rule set or policy in format --format."""
    if use_rules and session_id:
        raise click.UsageError("--rules and --session exclude each other")
    root = paths.sessions_dir()
    if session_id:
        folder = session_folder(session_id)
        entries = list(SessionDir(folder).read_log())
        rules = propose_rules(entries, [], folder.name)
        seen = resolutions(entries)
        source = f"session {folder.name}"
    else:
        with open_store() as store:
            rules = store.list(include_disabled=False)
        seen = resolutions(all_logs(root))
        source = "the rule store"
    opts = ExportOptions(
        name=name,
        source=source,
        resolvers=list(resolvers),
        labels=_labels(labels),
        namespace=namespace,
    )
    try:
        result = export(rules, seen, fmt, opts)
    except ExportError as e:
        raise click.UsageError(str(e)) from e
    for w in result.warnings:
        click.echo(f"warning: {safe(w)}", err=True)
    if output is not None and result.files:
        output.mkdir(parents=True, exist_ok=True)
        for fname, text in result.files.items():
            (output / fname).write_text(text)
        click.echo(f"wrote {len(result.files)} files to {safe(output)}", err=True)
    elif output is not None:
        output.write_text(result.text)
        click.echo(f"wrote {safe(output)}", err=True)
    else:
        echo_exact(result.text)
