"""``coderun rules``: list, add, remove, import, export and explain rules.

Exit codes: 0 ok, 1 not found / no rule matches, 2 usage error (including a malformed
policy file or target), 3 the rule store is unusable (corrupt, locked, too new).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import click

from sandbox.cli.common import NotFound, StoreFailed, open_store, session_folder
from sandbox.cli.file_rules import (
    ACTIONS,
    FILE_ACTIONS,
    NETWORK_PROTOS,
    action_cell,
    home_hint,
    is_file_target,
    port_cell,
    query_path,
    target_cell,
)
from sandbox.textout import echo_exact, rule_text
from snitch.core.blocklist import load_blocklist_file
from snitch.core.explain import endpoint_query, file_query
from snitch.core.grammar import (
    Lifetime,
    check_scope,
    is_synthetic_cidr,
    lifetime_text,
    parse_duration,
    parse_endpoint,
    parse_port,
    parse_target,
    synthetic_target,
)
from snitch.core.model import Action, Proto, Query, Rule
from snitch.core.pathgrammar import normalize_methods, normalize_path_prefix
from snitch.core.policy import FILE_ACCESS, Policy, check_rule
from snitch.core.policyfile import PolicyError, dump_policy, load_policy_file
from snitch.core.safetext import safe
from snitch.core.session_dir import SessionDir
from snitch.core.store import StoreError
from snitch.review.export.proposal import format_diff, propose_rules


class BadInput(click.ClickException):
    """A malformed file given on the command line (a usage error, so 2)."""

    exit_code = 2


def lifetime(rule: Rule, now: float) -> str:
    """A rule's lifetime for the listing: a session rule names its session."""
    text = lifetime_text(rule, now)
    return f"{text} {rule.session}" if text == Lifetime.SESSION else text


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows
    )


@click.group("rules")
def rules() -> None:
    """Manage the allow/deny rules and blocklists in the rule store."""


@rules.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--enabled-only", is_flag=True, help="Leave out disabled rules.")
def list_command(as_json: bool, enabled_only: bool) -> None:
    """List rules (and the size of the blocklist)."""
    with open_store() as store:
        found, blocked = store.list(include_disabled=not enabled_only), store.blocklist_count()
    for r in found:  # disabled when the store was opened; they never match
        if is_synthetic_cidr(r.cidr):
            click.echo(f"warning: rule {r.id} is off for good: {synthetic_target(str(r.cidr))}",
                       err=True)  # fmt: skip
    if as_json:
        click.echo(json.dumps([r.to_dict() for r in found], indent=2))
        return
    now = time.time()
    head = ["ID", "ACTION", "TARGET", "PORT", "PROTO", "SCOPE", "PRIO", "LIFETIME", "HITS"]
    rows = [[*head, "STATE", "SOURCE", "NOTE"]]
    for r in found:
        # Every cell escaped before the table is laid out (notes, scopes, sources and
        # paths are free text; a name may be a look-alike, shown marked). A file rule's
        # action is allow-file / deny-file, its target the path glob (and access).
        rows.append([safe(cell) for cell in (
            r.id, action_cell(r), port_cell(r), r.proto,
            r.scope, r.priority, lifetime(r, now), r.hits,
            "on" if r.enabled else "off", r.source, r.note,
        )])  # fmt: skip
        rows[-1].insert(2, target_cell(r))
    click.echo(_table(rows) if found else "no rules")
    if blocked:
        click.echo(f"blocklist: {blocked} entries (domains with their subdomains, networks)")


@rules.command("add")
@click.argument("action", type=click.Choice(ACTIONS))
@click.argument("target")
@click.option("--port", help="A port (443) or a range (8000-8100); default any.")
@click.option("--proto", type=click.Choice(NETWORK_PROTOS), help="Default any.")
@click.option("--scope", default="global", help="global, profile:NAME or image:NAME.")
@click.option("--priority", type=int, default=0, help="Higher wins before specificity.")
@click.option(
    "--path", help="URL path prefix, /v1/ or /v1/* (HTTP requests; HTTPS needs TLS interception)."
)
@click.option("--method", help="HTTP methods, GET or GET,HEAD (HTTP requests, as --path).")
@click.option("--access", type=click.Choice(FILE_ACCESS), help="File rules: read or write only.")
@click.option("--exe", help="Only for this program in the sandbox (a glob of its executable).")
@click.option("--for", "duration", help="Lifetime as a duration: 30s, 5m, 1h, 2d.")
@click.option("--session", help="Only for this session id (ends with it).")
@click.option("--note", default="", help="Free text shown in listings.")
@click.option("--disabled", is_flag=True, help="Add the rule switched off.")
@click.option("--json", "as_json", is_flag=True, help="Print the new rule as JSON.")
def add_command(
    action: str, target: str, port: str | None, proto: str | None, scope: str, priority: int,
    path: str | None, method: str | None, access: str | None, exe: str | None,
    duration: str | None, session: str | None, note: str, disabled: bool, as_json: bool,
) -> None:  # fmt: skip
    """Add a rule. TARGET is a host, *.domain (subdomains, not the apex), an IP, a CIDR or *;
    for allow-file / deny-file a path glob (~/.aws/*, **/.env, /work/**).

    With --path and/or --method it decides HTTP requests (docs/rules.md)."""
    if duration and session:
        raise click.UsageError("--for and --session are exclusive")
    try:
        if action in FILE_ACTIONS:
            if port or proto or path or method:
                raise ValueError(
                    "a file rule takes a path glob: no --port, --proto, --path or --method"
                )
            rule = Rule(FILE_ACTIONS[action], proto=Proto.FILE, file=target, access=access)
        elif access:
            raise ValueError("--access is for file rules (allow-file / deny-file)")
        else:
            host, cidr = parse_target(target)
            lo, hi = parse_port(port) if port else (0, 0)
            rule = Rule(Action(action), host=host, cidr=cidr, port_lo=lo, port_hi=hi,
                        proto=Proto(proto or Proto.ANY))  # fmt: skip
            if path is not None:
                rule.path_prefix = normalize_path_prefix(path)
            if method is not None:
                rule.method = normalize_methods(method)
        rule.scope, rule.priority, rule.exe = check_scope(scope), priority, exe
        rule.session, rule.enabled, rule.note = session, not disabled, note
        if duration:
            rule.expires_at = time.time() + parse_duration(duration)
        check_rule(rule)
    except ValueError as e:
        raise click.UsageError(str(e)) from e
    with open_store() as store:
        rule.id = store.add(rule)
    if as_json:
        click.echo(json.dumps(rule.to_dict(), indent=2))
    else:
        click.echo(f"added rule {rule.id}: {rule_text(rule)} ({lifetime(rule, time.time())})")
    hint = home_hint(rule.file) if rule.file else None
    if hint:
        click.echo(f"note: {safe(hint)}", err=True)


def _each_id(ids: tuple[int, ...], op: str, fn: Callable[[int], bool]) -> None:
    missing = [i for i in ids if not fn(i)]
    for i in ids:
        if i not in missing:
            click.echo(f"{op} rule {i}")
    if missing:
        raise NotFound(f"no rule with id {', '.join(map(str, missing))}")


@rules.command("rm")
@click.argument("ids", type=int, nargs=-1, required=True)
def rm_command(ids: tuple[int, ...]) -> None:
    """Remove rules by id."""
    with open_store() as store:
        _each_id(ids, "removed", store.remove)


@rules.command("enable")
@click.argument("ids", type=int, nargs=-1, required=True)
def enable_command(ids: tuple[int, ...]) -> None:
    """Switch rules on."""
    with open_store() as store:
        try:
            _each_id(ids, "enabled", lambda i: store.set_enabled(i, True))
        except ValueError as e:  # a rule for a synthetic address
            raise click.UsageError(str(e)) from e


@rules.command("disable")
@click.argument("ids", type=int, nargs=-1, required=True)
def disable_command(ids: tuple[int, ...]) -> None:
    """Switch rules off (they stay stored and never match)."""
    with open_store() as store:
        _each_id(ids, "disabled", lambda i: store.set_enabled(i, False))


def _signature(r: Rule) -> tuple[object, ...]:
    return (r.action, r.host, r.cidr, r.port_lo, r.port_hi, r.proto, r.scope, r.priority,
            r.path_prefix, r.method, r.exe, r.file, r.access, r.session, r.expires_at)  # fmt: skip


@rules.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--blocklist", is_flag=True, help="FILE is a hosts/domain/CIDR blocklist.")
def import_command(file: Path, blocklist: bool) -> None:
    """Import a TOML policy file (all or nothing), or a blocklist with --blocklist."""
    if blocklist:
        parsed = load_blocklist_file(file)
        with open_store() as store:
            added = store.blocklist_add(parsed.entries, source=file.name)
        dup = len(parsed.entries) - added
        click.echo(f"blocklist {safe(file.name)}: {added} new entries, {dup} already listed, "
                   f"{parsed.skipped} lines skipped")  # fmt: skip
        return
    try:
        policy = load_policy_file(file)
    except PolicyError as e:
        raise BadInput(str(e)) from e
    with open_store() as store:
        have = {_signature(r) for r in store.list()}
        new = [r for r in policy.rules if _signature(r) not in have]
        store.add_many(new, blocklist=policy.blocklist, source=f"policy:{file.name}")
    skipped = len(policy.rules) - len(new)
    extra = f", {len(policy.blocklist)} blocklist entries" if policy.blocklist else ""
    click.echo(f"imported {len(new)} rules from {safe(file)} ({skipped} duplicates skipped){extra}")
    if policy.secrets:  # per-run values: `coderun run --policy FILE` uses them, the store never
        click.echo(f"left out {len(policy.secrets)} [[secret]] tables (they are for runs: "
                   "coderun run --policy FILE)")  # fmt: skip


@rules.command("export")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path), required=False)
@click.option("--json", "as_json", is_flag=True, help="JSON instead of TOML.")
@click.option("--blocklist", is_flag=True, help="Include the blocklist entries.")
def export_command(file: Path | None, as_json: bool, blocklist: bool) -> None:
    """Export rules as a TOML policy file (to FILE, or stdout)."""
    with open_store() as store:
        found = store.list()
        entries = store.blocklist_list() if blocklist else []
    if as_json:
        text = json.dumps({"rules": [r.to_dict() for r in found], "blocklist": entries}, indent=2)
        text += "\n"
    else:
        text = dump_policy(found, entries)
    if file is None:
        echo_exact(text)
    else:
        file.write_text(text, encoding="utf-8")
        click.echo(f"exported {len(found)} rules to {safe(file)}", err=True)


@rules.command("explain")
@click.argument("target", metavar="HOST[:PORT] | PATH")
@click.option("--proto", type=click.Choice(NETWORK_PROTOS), help="Default tcp.")
@click.option("--profile", help="Explain as seen by a run with this profile.")
@click.option("--image", help="Explain as seen by a run of this image.")
@click.option("--session", help="Explain as seen by this session id.")
@click.option("--path", help="URL path, to see HTTP path rules.")
@click.option(
    "--method", help="HTTP method (GET, POST...), to see method rules; path / if no --path."
)
@click.option("--access", type=click.Choice(FILE_ACCESS), help="A PATH opened for (read).")
@click.option("--exe", help="As asked by this program in the sandbox (its executable path).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def explain_command(
    target: str, proto: str | None, profile: str | None, image: str | None,
    session: str | None, path: str | None, method: str | None, access: str | None,
    exe: str | None, as_json: bool,
) -> None:  # fmt: skip
    """Show which rule decides a connection (or, with --proto dns, a lookup), or an open
    of a shared file, and why.

    Without :PORT only rules for any port can match. A host is matched by name (as if
    the sandbox connected by that name); an IP only by address rules. A TARGET with a /
    or starting with ~ is a file (a relative path is taken from here; under your home
    folder it is matched as ~/...), opened for --access (default read).
    """
    query: Query
    if is_file_target(target):
        if proto or path or method:
            raise click.UsageError("a file is explained without --proto, --path or --method")
        query = file_query(query_path(target), access or "read", exe=exe, profile=profile,
                           image=image, session=session)  # fmt: skip
    elif access:
        raise click.UsageError("--access is for a file PATH (with a / or starting with ~)")
    else:
        try:
            host, port = parse_endpoint(target)
            if method is not None:
                if "," in method:
                    raise ValueError("give one HTTP method (a request has one)")
                method = normalize_methods(method)
                path = path or "/"
        except ValueError as e:
            raise click.UsageError(str(e)) from e
        query = endpoint_query(host, port, Proto(proto or Proto.TCP), profile=profile,
                               image=image, session=session, path=path, method=method,
                               exe=exe)  # fmt: skip
    with open_store() as store:
        explanation = Policy(store.list(), store.blocklist_view()).explain(query)
    if as_json:
        click.echo(json.dumps(explanation.to_dict(), indent=2))
    else:
        d = explanation.decision
        if query.file is not None:
            click.echo(f"file: {safe(query.file)} ({query.access})")
        click.echo(f"{d.action}: {safe(d.reason)}" if d else "no rule matches")
        click.echo(f"why: {safe(explanation.reason)}")
        if explanation.matches:
            click.echo("matching rules, in precedence order:")
            for i, m in enumerate(explanation.matches):
                rid = "-" if m.rule.id is None else str(m.rule.id)
                mark = "*" if i == 0 else " "
                click.echo(f" {mark} {rid:>4}  {rule_text(m.rule):<32} {safe(m.why)}")
    if explanation.decision is None:
        raise SystemExit(1)


@rules.command("from-session")
@click.argument("session")
@click.option("--apply", "--yes", "-y", "apply", is_flag=True, help="Add the proposed rules.")
@click.option("--json", "as_json", is_flag=True, help="The proposed rules, one JSON a line.")
def from_session(session: str, apply: bool, as_json: bool) -> None:
    """Propose allow rules for what SESSION was allowed to do (by name where known)."""
    folder = session_folder(session)
    entries = list(SessionDir(folder).read_log())
    with open_store() as store:
        existing = store.list()
        proposed = propose_rules(entries, existing, folder.name)
        if as_json:
            for r in proposed:
                click.echo(json.dumps(r.to_dict(), sort_keys=True))
        elif proposed:
            click.echo(format_diff(proposed, existing, describe=rule_text), nl=False)
        if not proposed:
            click.echo("nothing to propose: the store already allows all of it", err=True)
            return
        if apply:
            try:
                store.add_many(proposed)
            except StoreError as e:
                raise StoreFailed(str(e)) from e
            click.echo(f"added {len(proposed)} rules (source session:{folder.name})", err=True)
        else:
            click.echo(f"{len(proposed)} rules proposed; add them with --apply", err=True)
