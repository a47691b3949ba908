"""Reading session records and logs from the data dir, and printing them for people.

A session folder is ``sessions/<id>/``, read through ``SessionDir``
(snitch/core/session_dir.py): its record, its traffic log and its gateway's state.

The ``format_*`` functions are for people: every field that came from a log or a record
is escaped (``snitch/core/safetext.py``) before it is laid out.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from sandbox.textout import show_name
from snitch.core.grammar import Origin, Verdict
from snitch.core.logentry import EntryKind, LogEntry
from snitch.core.logfile import read_log
from snitch.core.process import describe_process
from snitch.core.safetext import safe
from snitch.core.session_dir import FILES_LOG, SessionDir
from snitch.review.logquery import HostSummary, verdict_class

ASKED = frozenset({Origin.PERSON, Origin.DEADLINE, Origin.LIMIT})  # ask mode's own verdicts


def _asked_before_origin(e: LogEntry) -> bool:
    """A log written before ``origin`` was logged said ask mode's verdicts in its reason."""
    return not e.origin and e.reason.startswith("ask:")


def count_entries(path: Path) -> dict[str, int]:
    """Flows allowed / denied / asked (held for a person), lookups, HTTP requests, events."""
    counts = {"allow": 0, "deny": 0, "ask": 0, "dns": 0, "dns_deny": 0, "http": 0, "events": 0}
    for e in read_log(path):
        if e.kind is EntryKind.FLOW:
            if e.verdict in ("allow", "deny", "rebind"):  # a rebind is a refusal
                counts[verdict_class(e.verdict)] += 1
            if e.verdict == Verdict.ASK or e.origin in ASKED or _asked_before_origin(e):
                counts["ask"] += 1
        elif e.kind is EntryKind.DNS:
            counts["dns"] += 1
            counts["dns_deny"] += verdict_class(e.verdict) == "deny"
        elif e.kind is EntryKind.HTTP:
            counts["http"] += 1
        else:
            counts["events"] += 1
    return counts


def session_record(folder: Path) -> dict[str, Any] | None:
    """A session's record with ``running`` and ``counts`` added; None if it has none."""
    sd = SessionDir(folder)
    record = sd.read_record()
    if record is None:
        return None
    rec: dict[str, Any] = record.to_dict()
    rec["running"] = sd.running()
    rec["counts"] = count_entries(sd.log_path)
    return rec


def list_sessions(root: Path) -> list[dict[str, Any]]:
    """Every session record, oldest first, with verdict counts from its log."""
    records = []
    for folder in root.iterdir() if root.exists() else []:
        rec = session_record(folder) if folder.is_dir() else None
        if rec is not None:
            records.append(rec)
    return sorted(records, key=lambda r: r.get("start") or 0)


def find_session(root: Path, session: str | None) -> Path | None:
    """The folder of a session id (or unique prefix); the latest session for None."""
    if session is None:
        recs = list_sessions(root)
        return root / recs[-1]["id"] if recs else None
    if not root.exists() or "/" in session or session in ("", ".", ".."):
        return None
    if (root / session).is_dir():
        return root / session
    matches = [p for p in root.iterdir() if p.is_dir() and p.name.startswith(session)]
    return matches[0] if len(matches) == 1 else None


def all_logs(root: Path) -> Iterator[LogEntry]:
    """The entries of every session's log, session by session."""
    for folder in sorted(root.iterdir()) if root.exists() else []:
        if folder.is_dir():
            yield from SessionDir(folder).read_log()


class _Tail:
    """The whole lines appended to one log file since the last look."""

    def __init__(self, path: Path) -> None:
        self.path, self.pos, self.tail = path, 0, ""

    def lines(self, ended: bool) -> list[str]:
        try:
            with open(self.path, encoding="utf-8") as f:
                f.seek(self.pos)
                chunk = f.read()
                self.pos = f.tell()
        except FileNotFoundError:
            chunk = ""
        text = self.tail + chunk
        cut = len(text) if ended else text.rfind("\n") + 1
        lines, self.tail = text[:cut], text[cut:]
        return lines.splitlines()


def follow(
    folder: Path, *, poll: float = 0.5, sleep: Callable[[float], None] = time.sleep
) -> Iterator[LogEntry]:
    """A session's log entries as they are written (the gateway's and the shares' file
    lines, each look's in time order), until its record has an ``end`` (whatever is
    written up to then is read; a torn last line waits for its end)."""
    sd = SessionDir(folder)
    tails = [_Tail(sd.log_path), _Tail(folder / FILES_LOG)]
    while True:
        ended = sd.ended()  # checked before reading: nothing written is missed
        found: list[LogEntry] = []
        for tail in tails:
            for line in tail.lines(ended):
                try:
                    found.append(LogEntry.from_dict(json.loads(line)))
                except (ValueError, KeyError, TypeError):
                    continue
        found.sort(key=lambda e: e.time)
        yield from found
        if ended:
            return
        sleep(poll)


def _clock(t: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t)) if t else "-"


def format_session(rec: dict[str, Any]) -> str:
    """One line of ``coderun sessions``; every field from the record is shown escaped."""
    c = rec.get("counts") or {}
    end = "running" if rec.get("running") else _clock(rec.get("end"))
    exit_code = rec.get("exit")
    command = rec.get("command") or []
    args = " ".join(safe(a) for a in command) if isinstance(command, list) else safe(command)
    return (
        f"{safe(rec.get('id', ''))[:12]:12}  {_clock(rec.get('start')):19}  {end:19}  "
        f"{'-' if exit_code is None else safe(exit_code):>4}  "
        f"{safe(rec.get('image') or '-'):10}  "
        f"{c.get('allow', 0):>5}  {c.get('deny', 0):>5}  {c.get('ask', 0):>4}  {args}"
    )


SESSION_HEADER = (
    f"{'ID':12}  {'START':19}  {'END':19}  {'EXIT':>4}  {'IMAGE':10}  "
    f"{'ALLOW':>5}  {'DENY':>5}  {'ASK':>4}  COMMAND"
)


def _names(names: list[str]) -> str:
    return ",".join(show_name(n) for n in names)


def format_entry(e: LogEntry) -> str:
    """One line of ``coderun log``: every field the sandbox controls (names, URLs,
    headers, messages) is escaped, so it stays one inert line."""
    stamp = time.strftime("%H:%M:%S", time.localtime(e.time))
    if e.kind is EntryKind.FLOW:
        where = f"{safe(e.dst)}:{e.dport}" if e.proto != "icmp" else safe(e.dst)
        what = f"{safe(e.proto):4} {where:21} {_names(e.names)}"
        if e.proto in ("tcp", "udp"):
            what += f"  by {safe(describe_process(e.exe, e.pid, e.parents))}"
    elif e.kind is EntryKind.DNS:
        answers = " ".join(safe(a) for a in e.answers) or "-"
        what = f"dns  {show_name(e.qname)} {safe(e.qtype)} -> {answers}"
    elif e.kind is EntryKind.HTTP:
        what = (f"http {safe(e.method)} {safe(e.url)} {e.status} out={e.bytes_out} "
                f"in={e.bytes_in}")  # fmt: skip
        if e.message:
            what += f" ({safe(e.message)})"
    elif e.kind is EntryKind.TLS:
        sni = show_name(e.sni) if e.sni else "-"
        what = f"tls  {safe(e.dst)}:{e.dport} sni={sni} out={e.bytes_out} in={e.bytes_in}"
    elif e.kind is EntryKind.FILE:
        path = safe(e.names[0]) if e.names else "-"  # as the sandbox sees it
        if e.path and e.path != (e.names[0] if e.names else ""):
            path += f" = {safe(e.path)}"  # as the person knows it
        if e.method == "close":
            what = f"file close {path} read={e.bytes_in} written={e.bytes_out}"
        else:
            pid = e.pid or safe(e.src)  # older lines: the host pid in src, the command in message
            command = safe(e.cmdline or e.message)[:60]
            what = f"file {safe(e.method or e.access)} {path} pid={pid} ({command})"
    elif e.kind is EntryKind.LEAK:
        host = show_name(e.names[0]) if e.names else "-"
        what = f"leak {safe(e.method)} to {host} {safe(e.dst)}:{e.dport}"
    else:
        return f"{stamp} ---- {safe(e.message)}"
    rule = f"  [{safe(e.rule)}]" if e.rule else (f"  ({safe(e.reason)})" if e.reason else "")
    if e.kind is EntryKind.HTTP and e.verdict == "deny" and e.reason:
        rule = f"  ({safe(e.reason)})"  # what the 403's X-Coderun-Denied said (names the rule)
    return f"{stamp} {safe(e.verdict):6} {what}{rule}"


SUMMARY_HEADER = (
    f"{'HOST':40}  {'HITS':>5}  {'ALLOW':>5}  {'DENY':>5}  {'OTHER':>5}  "
    f"{'OUT':>9}  {'IN':>9}  PORTS"
)


def format_summary(s: HostSummary) -> str:
    """One line of ``coderun log --summary``: a long host is cut in the middle (its
    registrable domain stays), a look-alike one marked."""
    return (
        f"{show_name(s.host, 40):40}  {s.hits:>5}  {s.allow:>5}  {s.deny:>5}  {s.other:>5}  "
        f"{s.bytes_out:>9}  {s.bytes_in:>9}  {' '.join(safe(p) for p in sorted(s.ports))}"
    )
