"""Questions about traffic logs: filters, per-host summaries, CSV, name -> address maps,
and retention (pruning whole old sessions, never running ones).

A session folder is ``ROOT/<id>/``, read through ``snitch/core/session_dir.py``
(its record, its gateway's state, its log).
"""

from __future__ import annotations

import csv
import datetime as dt
import fnmatch
import io
import os
import shutil
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

from snitch.core.grammar import GatewayState, Verdict, is_address, parse_duration
from snitch.core.logentry import EntryKind, LogEntry
from snitch.core.pathgrammar import path_glob_matches
from snitch.core.session_dir import SessionDir

FRESH_SECONDS = 600.0  # a folder touched this recently is never pruned (it may be starting)


# -- filters ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Filter:
    """Every set criterion must hold; ``hosts`` are globs, any of which may match."""

    verdicts: frozenset[str] = frozenset()
    hosts: tuple[str, ...] = ()
    proto: str | None = None
    port: int | None = None
    since: float | None = None
    until: float | None = None
    kinds: frozenset[str] = frozenset()
    paths: tuple[str, ...] = ()  # path globs (``~/.aws/*``): file lines, either path
    exes: tuple[str, ...] = ()  # globs of the asking program's path, any of which may match


def url_host(url: str) -> str:
    try:
        return (urlsplit(url).hostname or "").lower()
    except ValueError:
        return ""


def entry_hosts(e: LogEntry) -> list[str]:
    """Every name or address an entry is about: names, qname, SNI, URL host, dst."""
    found = [n.lower() for n in e.names]
    for extra in (e.qname.lower(), e.sni.lower(), url_host(e.url), e.dst):
        if extra and extra not in found:
            found.append(extra)
    return found


def entry_proto(e: LogEntry) -> str:
    if e.kind is EntryKind.HTTP:
        return "http"
    return e.proto or ("dns" if e.kind is EntryKind.DNS else "")


def entry_port(e: LogEntry) -> int:
    if e.kind is EntryKind.DNS:
        return 53
    if e.dport:
        return e.dport
    if e.kind is EntryKind.HTTP and e.url:
        try:
            parts = urlsplit(e.url)
            return parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            return 0
    return 0


def matches(e: LogEntry, f: Filter) -> bool:
    if f.kinds and str(e.kind) not in f.kinds:
        return False
    if f.verdicts and e.verdict not in f.verdicts and verdict_class(e.verdict) not in f.verdicts:
        return False
    if f.since is not None and e.time < f.since:
        return False
    if f.until is not None and e.time > f.until:
        return False
    if f.proto is not None and entry_proto(e) != f.proto.lower():
        return False
    if f.port is not None and entry_port(e) != f.port:
        return False
    if f.paths and not path_matches(e, f.paths):
        return False
    if f.hosts:
        hosts = entry_hosts(e)
        if not any(fnmatch.fnmatchcase(h, g.lower()) for g in f.hosts for h in hosts):
            return False
    # an entry whose program is unknown matches no --exe
    return not f.exes or bool(e.exe and any(fnmatch.fnmatchcase(e.exe, g) for g in f.exes))


def path_matches(e: LogEntry, globs: tuple[str, ...]) -> bool:
    """A file line whose path, as the person knows it or as the sandbox sees it, matches
    one of the path globs (``*`` within a folder, ``**`` across folders)."""
    if e.kind is not EntryKind.FILE:
        return False
    paths = [p for p in (e.path, *e.names) if p]
    return any(path_glob_matches(g, p) for g in globs for p in paths)


def verdict_class(verdict: str) -> str:
    """``deny`` for a rebind (a refusal too), else the verdict itself."""
    return str(Verdict.DENY) if verdict == Verdict.REBIND else verdict


def filter_entries(entries: Iterable[LogEntry], f: Filter) -> Iterator[LogEntry]:
    return (e for e in entries if matches(e, f))


def parse_when(text: str, now: float | None = None) -> float:
    """A point in time: ``10m`` / ``2h`` ago, ``HH:MM[:SS]`` today, an ISO date or
    datetime (local time unless it has an offset), or a Unix timestamp."""
    t = time.time() if now is None else now
    s = text.strip()
    try:
        value = float(s)
    except ValueError:
        pass
    else:
        if value >= 1e8:
            return value
    if s and s[-1].lower() in "smhdw" and s[0].isdigit():
        return t - parse_duration(s)
    try:
        clock = dt.time.fromisoformat(s)
    except ValueError:
        pass
    else:
        today = dt.datetime.fromtimestamp(t).date()
        return dt.datetime.combine(today, clock).timestamp()
    try:
        when = dt.datetime.fromisoformat(s)
    except ValueError:
        raise ValueError(
            f"bad time {text!r} (use 10m, 2h, 14:30, 2024-05-01 or 2024-05-01T14:30)"
        ) from None
    return when.timestamp()


# -- summary and CSV -------------------------------------------------------------------------


def host_key(e: LogEntry) -> str:
    """The name an entry is counted under: its first name, the qname, URL host or address."""
    return (e.names[0] if e.names else "") or e.qname or e.sni or url_host(e.url) or e.dst


@dataclass(slots=True)
class HostSummary:
    host: str
    hits: int = 0
    allow: int = 0
    deny: int = 0
    other: int = 0  # ask, pending, expired
    dns: int = 0
    http: int = 0
    bytes_out: int = 0
    bytes_in: int = 0
    ports: set[str] = field(default_factory=set)
    first: float = 0.0
    last: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "hits": self.hits,
            "allow": self.allow,
            "deny": self.deny,
            "other": self.other,
            "dns": self.dns,
            "http": self.http,
            "bytes_out": self.bytes_out,
            "bytes_in": self.bytes_in,
            "ports": sorted(self.ports),
            "first": self.first,
            "last": self.last,
        }


def summarize(entries: Iterable[LogEntry]) -> list[HostSummary]:
    """Per-host counts over flows, lookups and HTTP requests, most hits first."""
    out: dict[str, HostSummary] = {}
    for e in entries:
        if e.kind is EntryKind.EVENT:
            continue
        key = host_key(e)
        s = out.get(key)
        if s is None:
            s = out[key] = HostSummary(key, first=e.time, last=e.time)
        s.hits += 1
        if e.verdict == "allow":
            s.allow += 1
        elif verdict_class(e.verdict) == "deny":
            s.deny += 1
        elif e.verdict:
            s.other += 1
        s.dns += e.kind is EntryKind.DNS
        s.http += e.kind is EntryKind.HTTP
        s.bytes_out += e.bytes_out
        s.bytes_in += e.bytes_in
        if e.kind is not EntryKind.DNS and entry_port(e):
            s.ports.add(f"{entry_port(e)}/{entry_proto(e)}")
        s.first, s.last = min(s.first, e.time), max(s.last, e.time)
    return sorted(out.values(), key=lambda s: (-s.hits, s.host))


CSV_FIELDS = (
    "time", "kind", "session", "verdict", "proto", "src", "sport", "dst", "dport", "names",
    "qname", "qtype", "answers", "sni", "method", "url", "status", "bytes_out", "bytes_in",
    "duration_ms", "rule_id", "rule", "reason", "message",
    "origin", "path", "access",
    "pid", "uid", "exe", "cmdline", "parents",
)  # fmt: skip


def csv_row(e: LogEntry) -> list[str]:
    d = e.to_dict()
    row = []
    for name in CSV_FIELDS:
        value = getattr(e, name)
        if name == "time":
            row.append(dt.datetime.fromtimestamp(e.time, tz=dt.UTC).isoformat())
        elif isinstance(value, list):
            row.append(" ".join(str(v) for v in value))
        elif name not in d and name != "kind":
            row.append("")
        else:
            row.append(str(value))
    return row


class CsvRows:
    r"""A CSV writer whose rows end in ``\n`` and which quotes a field holding ``\r`` or
    ``\n`` (the csv module quotes only the characters of its own line terminator, so a
    bare ``\r`` in a name would split the row for every reader). Fields stay exact."""

    def __init__(self, out: IO[str]) -> None:
        self.out = out
        self._buf = io.StringIO()
        self._writer = csv.writer(self._buf, lineterminator="\r\n")

    def writerow(self, row: Iterable[object]) -> None:
        self._buf.seek(0)
        self._buf.truncate()
        self._writer.writerow(row)
        self.out.write(self._buf.getvalue()[:-2] + "\n")


# -- names -> addresses ----------------------------------------------------------------------


def resolutions(entries: Iterable[LogEntry]) -> dict[str, list[str]]:
    """Name -> addresses seen for it: real DNS answers, and the dst of flows with names.

    Synthetic answers (lookups still waiting for a decision in ask mode) are skipped.
    """
    out: dict[str, list[str]] = {}

    def add(name: str, addr: str) -> None:
        n = name.lower().rstrip(".")
        if n and is_address(addr):
            addrs = out.setdefault(n, [])
            if addr not in addrs:
                addrs.append(addr)

    for e in entries:
        if e.kind is EntryKind.DNS and e.verdict in ("allow", "rebind") and e.qname:
            for a in e.answers:
                add(e.qname, a)
        elif e.kind is EntryKind.FLOW and e.dst:
            for n in e.names:
                add(n, e.dst)
    return out


# -- sessions: running, following, pruning ---------------------------------------------------


def session_running(folder: Path) -> bool:
    """True while the session has no end and its gateway says it is ready."""
    return SessionDir(folder).running()


def session_ended(folder: Path) -> bool:
    return SessionDir(folder).ended()


def folder_bytes(folder: Path) -> int:
    total = 0
    for dirpath, _, files in os.walk(folder):
        for name in files:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
            except OSError:
                continue
    return total


@dataclass(slots=True)
class _Session:
    folder: Path
    when: float  # end, else start, else the folder's mtime
    size: int
    running: bool


def _sessions(root: Path) -> list[_Session]:
    out = []
    for folder in sorted(root.iterdir()) if root.is_dir() else []:
        if not folder.is_dir():
            continue
        sd = SessionDir(folder)
        rec = sd.read_record()
        mtime = folder.stat().st_mtime
        when = ((rec.end or rec.start) if rec is not None else None) or mtime
        running = (
            sd.running()
            or rec is None
            and (
                time.time() - mtime < FRESH_SECONDS  # being set up
                or sd.gateway_state() == GatewayState.STANDBY  # a pool's
            )
        )
        out.append(_Session(folder, float(when), folder_bytes(folder), running))
    return sorted(out, key=lambda s: s.when)


def prune(
    root: Path,
    keep_days: float | None = None,
    max_bytes: int | None = None,
    *,
    now: float | None = None,
    dry_run: bool = False,
) -> list[str]:
    """Remove whole sessions older than ``keep_days``, then the oldest ones until the
    sessions that ended take at most ``max_bytes`` together. Running sessions are never
    removed, and their size does not count: a running session's flood (its log is
    capped on its own) never makes room at an older session's expense.
    Returns the ids (folder names) removed, oldest first."""
    t = time.time() if now is None else now
    sessions = _sessions(root)
    total = sum(s.size for s in sessions if not s.running)
    removed = []
    for s in sessions:
        if s.running:
            continue
        too_old = keep_days is not None and s.when < t - keep_days * 86400
        too_big = max_bytes is not None and total > max_bytes
        if not (too_old or too_big):
            continue
        if not dry_run:
            shutil.rmtree(s.folder, ignore_errors=True)
        total -= s.size
        removed.append(s.folder.name)
    return removed
