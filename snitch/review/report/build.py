"""A session's log -> its run report (``model.Report``).

- a **flow** (TCP, UDP, ICMP) counts under its endpoint: the first verified name of its
  destination, else the address; its port and protocol;
- a **lookup** under ``NAME:53/dns``;
- an **HTTP request** or **TLS connection** read by the proxy adds its bytes to the flow
  it travelled on (matched by the sandbox's address and port); one the proxy refused (a
  deny rule on its SNI, Host or path) is a denied attempt of its own;
- a **leak** (a secret's placeholder sent where it is not bound) is a denied attempt;
- a **file** line (a ``--share`` open and close) counts under its path and access.

Inbound flows (connections forwarded into the sandbox with ``-p``) are not contacts the
sandbox made and are left out. Every text field is made safe here (``safetext.safe``).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from snitch.core.grammar import Verdict
from snitch.core.logentry import INBOUND_REASON, EntryKind, LogEntry
from snitch.core.safetext import safe
from snitch.core.session_dir import SessionDir, SessionRecord
from snitch.review.logquery import url_host, verdict_class
from snitch.review.report.model import (
    Endpoint,
    EndpointKey,
    FileAccess,
    Process,
    Report,
    SessionInfo,
)

MAX_PROCESSES = 5  # command lines kept per file


def endpoint_name(name: str) -> str:
    """A name or address as a baseline compares it: lower case, no final dot, safe."""
    return safe(name.strip().lower().rstrip("."))


def process_of(e: LogEntry) -> Process:
    """The process that made an entry, as attribution logged it (empty when unknown)."""
    if not (e.exe or e.pid):
        return Process()
    return Process(safe(e.exe), e.pid, safe(e.cmdline), tuple(safe(p) for p in e.parents))


def session_info(record: SessionRecord | None, session_id: str) -> SessionInfo:
    if record is None:
        return SessionInfo(safe(session_id))
    return SessionInfo(
        id=safe(record.id),
        command=tuple(safe(a) for a in record.command),
        image=safe(record.image),
        mode=safe(record.mode),
        start=record.start,
        end=record.end,
        exit=record.exit,
        error=safe(record.error) if record.error is not None else None,
    )


class _Builder:
    def __init__(self) -> None:
        self.rows: dict[tuple[EndpointKey, str, str, str], Endpoint] = {}
        self.by_source: dict[tuple[str, int], Endpoint] = {}  # an allowed flow's (src, sport)
        self.files: dict[tuple[str, str, str, str], FileAccess] = {}
        self.opened: dict[str, FileAccess] = {}  # path -> its latest allowed open
        self.dropped = 0

    def row(self, key: EndpointKey, verdict: str, e: LogEntry) -> Endpoint:
        process = process_of(e)
        rule = safe(e.rule)
        ident = (key, verdict, rule, process.exe)
        found = self.rows.get(ident)
        if found is None:
            found = self.rows[ident] = Endpoint(
                key, verdict, rule, safe(e.reason), safe(e.origin), process
            )
        found.seen(e.time)
        return found

    def add(self, e: LogEntry) -> None:
        if e.kind is EntryKind.FLOW:
            self.flow(e)
        elif e.kind is EntryKind.DNS:
            key = EndpointKey(endpoint_name(e.qname), 53, "dns")
            verdict = verdict_class(e.verdict) or str(Verdict.ALLOW)
            row = self.row(key, verdict, e)
            row.connections += 1
            if verdict == Verdict.ALLOW:
                for answer in e.answers:
                    _add_address(row, answer)
        elif e.kind in (EntryKind.HTTP, EntryKind.TLS):
            self.proxied(e)
        elif e.kind is EntryKind.LEAK:
            name = e.names[0] if e.names else e.dst
            row = self.row(EndpointKey(endpoint_name(name), e.dport, "tcp"), "deny", e)
            row.connections += 1
            _add_address(row, e.dst)
        elif e.kind is EntryKind.FILE:
            self.file(e)
        elif e.kind is EntryKind.EVENT:
            self.dropped += e.dropped

    def flow(self, e: LogEntry) -> None:
        if e.reason.startswith(INBOUND_REASON):
            return
        name = e.names[0] if e.names else e.dst
        port = 0 if e.proto == "icmp" else e.dport
        verdict = verdict_class(e.verdict) or str(Verdict.ALLOW)
        row = self.row(EndpointKey(endpoint_name(name), port, e.proto), verdict, e)
        row.connections += 1
        _add_address(row, e.dst)
        if verdict == Verdict.ALLOW and e.src:
            self.by_source[(e.src, e.sport)] = row

    def proxied(self, e: LogEntry) -> None:
        """An HTTP request or relayed TLS connection: bytes to its flow, or a refusal."""
        if verdict_class(e.verdict) == Verdict.DENY:
            name = (e.names[0] if e.names else "") or url_host(e.url) or e.sni or e.dst
            refused = self.row(EndpointKey(endpoint_name(name), e.dport, "tcp"), "deny", e)
            refused.connections += 1
            refused.requests += e.kind is EntryKind.HTTP
            _add_address(refused, e.dst)
            return
        row = self.by_source.get((e.src, e.sport))
        if row is None:  # no flow line (read in passing): the address, never a claimed name
            name = e.dst or (e.names[0] if e.names else "")
            row = self.row(EndpointKey(endpoint_name(name), e.dport, "tcp"), "allow", e)
            row.connections += 1
            _add_address(row, e.dst)
            self.by_source[(e.src, e.sport)] = row
        row.seen(e.time)
        row.requests += e.kind is EntryKind.HTTP
        row.bytes_out += e.bytes_out
        row.bytes_in += e.bytes_in

    def file(self, e: LogEntry) -> None:
        """An open (``access`` read/write; older logs said it in ``method``), decided, or
        the close of an allowed one (its bytes)."""
        path = safe(e.names[0] if e.names else e.path)
        if e.method == "close":
            opened = self.opened.get(path)
            if opened is not None:
                opened.last = max(opened.last, e.time)
                opened.bytes_read += e.bytes_in
                opened.bytes_written += e.bytes_out
            return
        access = safe(e.access or e.method)
        verdict = verdict_class(e.verdict) or str(Verdict.ALLOW)
        rule = safe(e.rule)
        item = self.files.get((path, access, verdict, rule))
        if item is None:
            item = self.files[(path, access, verdict, rule)] = FileAccess(
                path, access, verdict, rule, first=e.time
            )
        item.first, item.last = min(item.first, e.time), max(item.last, e.time)
        if verdict == Verdict.ALLOW:
            self.opened[path] = item
        item.opens += 1
        who = safe(e.cmdline or e.message or e.exe)
        if who and who not in item.processes and len(item.processes) < MAX_PROCESSES:
            item.processes.append(who)

    def report(self, session: SessionInfo) -> Report:
        rows = sorted(self.rows.values(),
                      key=lambda r: (r.key, r.verdict, r.rule, r.process.exe))  # fmt: skip
        denied = [r for r in rows if r.verdict == Verdict.DENY]
        allowed = [r for r in rows if r.verdict != Verdict.DENY]
        files = sorted(self.files.values(), key=lambda f: (f.path, f.access, f.verdict, f.rule))
        return Report(session, allowed, denied, files, self.dropped)


def _add_address(row: Endpoint, address: str) -> None:
    shown = safe(address)
    if shown and shown not in row.addresses:
        row.addresses.append(shown)


def build_report(entries: Iterable[LogEntry], session: SessionInfo) -> Report:
    builder = _Builder()
    # In time order, not file order: a flow's line is written once its process is known
    # (up to 0.5 s after its verdict, whose time it carries), so its requests' http lines
    # may come first in the file; they are matched to the flow by its source port.
    for e in sorted(entries, key=lambda e: e.time):
        builder.add(e)
    return builder.report(session)


def session_report(folder: Path) -> Report:
    """The report of the session whose folder is ``folder``."""
    sd = SessionDir(folder)
    return build_report(sd.read_log(), session_info(sd.read_record(), sd.id))
