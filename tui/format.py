"""Pure helpers: text for cells, names, patterns, and parsing of the rule form's fields.

Functions that return text for a person return it already made safe (``snitch.core.safetext``
via ``tui.inert``); callers still wrap it in ``Text``, never in markup.
"""

from __future__ import annotations

import fnmatch
import time
from urllib.parse import urlsplit

from rich.text import Text

from snitch.core.grammar import Lifetime, choices, format_port, is_address, lifetime_text
from snitch.core.logentry import EntryKind, LogEntry
from snitch.core.model import Pending, PendingKind, Proto, Rule
from snitch.core.safetext import ELLIPSIS, safe
from tui.inert import shown_name

# The lifetimes the dashboard offers (any other duration can be typed in the rule form).
LIFETIMES = (Lifetime.ONCE, "30s", "5m", "1h", Lifetime.SESSION, Lifetime.ALWAYS)
PROTOS = choices(Proto)
LIFETIME_PARTS = 2  # a rule's time left in the largest two units: 1d2h, 5m30s
FILE_MARK = "file "  # before a file rule's glob in the rules table and dialogs


def short_session(session: str, width: int = 12) -> str:
    return session if len(session) <= width else session[: width - 1] + "…"


def countdown(seconds: float) -> Text:
    """``42s`` / ``1m05s``, yellow under 15 s and red under 5 s."""
    left = max(0, int(seconds + 0.999))
    text = f"{left}s" if left < 60 else f"{left // 60}m{left % 60:02d}s"
    style = "bold red" if left < 5 else "yellow" if left < 15 else "green"
    return Text(text, style=style, justify="right")


def clock_time(stamp: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(stamp))


def host_name(item: Pending) -> str | None:
    """The item's name (SNI, a DNS name, the looked-up name), or None for a bare address."""
    label = item.label
    return None if is_address(label) else label


def item_names(item: Pending) -> list[str]:
    """Every name a batch pattern may match on, lower-cased (none for a held open of a
    file: a batch decides connections and lookups)."""
    if item.kind == PendingKind.FILE:
        return []
    found = [item.sni, *item.names, item.dst]
    return [n.lower().rstrip(".") for n in found if n]


def pattern_matches(pattern: str, item: Pending) -> bool:
    """Whether a batch pattern such as ``*.example.test`` covers the item (glob syntax)."""
    pat = pattern.strip().lower()
    return bool(pat) and any(fnmatch.fnmatchcase(n, pat) for n in item_names(item))


def port_proto(port: int, proto: str) -> str:
    return f"{port}/{proto}" if port else proto


def shown_url(url: str, width: int) -> str:
    """A URL in ``width`` characters: its host elided in the middle (never losing its
    end), then as much of the path as fits."""
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. brackets that are no IPv6 address: shown as it came
        parts = None
    if parts is None or not parts.netloc:
        text = safe(url)
        return text if len(text) <= width else text[: width - 1] + ELLIPSIS
    head = f"{safe(parts.scheme)}://" if parts.scheme else ""
    host = shown_name(parts.netloc, max(12, width - len(head) - 8))
    rest = safe(url[url.index(parts.netloc) + len(parts.netloc) :])
    room = width - len(head) - len(host)
    if len(rest) > room:
        rest = rest[: max(0, room - 1)] + ELLIPSIS
    return head + host + rest


def entry_target(entry: LogEntry, width: int = 40) -> str:
    """The destination of a log line as a person reads it, made safe, in ``width``."""
    if entry.kind is EntryKind.DNS:
        return shown_name(entry.qname, width) if entry.qname else safe(entry.dst)
    if entry.kind is EntryKind.HTTP:
        if entry.url:
            return shown_url(entry.url, width)
        return shown_name(entry.sni, width) if entry.sni else safe(entry.dst)
    if entry.kind is EntryKind.TLS:
        return shown_name(entry.sni, width) if entry.sni else safe(entry.dst)
    if entry.kind is EntryKind.EVENT:
        text = safe(entry.message)
        return text if len(text) <= width else text[: width - 1] + ELLIPSIS
    if entry.kind is EntryKind.FILE:
        text = safe(entry.path or (entry.names[0] if entry.names else ""))
        return text if len(text) <= width else ELLIPSIS + text[-(width - 1) :]
    name = entry.sni or (entry.names[0] if entry.names else "")
    dst = safe(entry.dst)
    if not name:
        return dst
    if not entry.dst:
        return shown_name(name, width)
    return f"{shown_name(name, max(12, width - len(dst) - 3))} ({dst})"


def entry_port(entry: LogEntry) -> str:
    if entry.kind is EntryKind.DNS:
        return safe(f"dns {entry.qtype}".strip())
    if entry.kind is EntryKind.EVENT:
        return ""
    if entry.kind is EntryKind.FILE:
        return safe(f"file {entry.method or entry.access}")
    return safe(port_proto(entry.dport, entry.proto))


def describe_entry(entry: LogEntry) -> str:
    """One line with everything a log entry says, for the line under a traffic table
    (made safe; names elided in the middle when very long)."""
    session = safe(entry.session)
    if entry.kind is EntryKind.EVENT:
        return f"{safe(entry.message)} · session {session}"
    if entry.kind is EntryKind.DNS:
        answers = ", ".join(safe(a) for a in entry.answers) or "no answer"
        what = f"lookup of {shown_name(entry.qname)} {safe(entry.qtype)} → {answers}"
    elif entry.kind is EntryKind.HTTP:
        what = f"{safe(entry.method)} {shown_url(entry.url, 100)} → {entry.status or '-'}"
        what += f" · {entry.bytes_out} B out, {entry.bytes_in} B in"
    elif entry.kind is EntryKind.FILE:
        shown = safe(entry.names[0]) if entry.names else ""
        what = f"file {safe(entry.method or entry.access)} {safe(entry.path or shown)}"
        what += f" ({shown} in the sandbox)" if entry.path and shown else ""
        if entry.method == "close":
            what += f" · {entry.bytes_in} B read, {entry.bytes_out} B written"
        if entry.pid:
            what += f" · pid {entry.pid} {safe(entry.cmdline)[:80]}"
    elif entry.kind is EntryKind.TLS:
        sni = shown_name(entry.sni) if entry.sni else "(no SNI)"
        what = f"TLS {sni} → {safe(entry.dst)}:{entry.dport}"
        what += f" · {entry.bytes_out} B out, {entry.bytes_in} B in"
    else:
        name = shown_name(entry.sni) if entry.sni else ", ".join(shown_name(n) for n in entry.names)
        dst, proto = safe(entry.dst), safe(entry.proto)
        where = f"{dst}:{entry.dport}/{proto}" if entry.dport else dst
        what = f"{name} → {where}" if name else where
        what += f" from {safe(entry.src)}:{entry.sport}" if entry.src else ""
    why = f" by rule {entry.rule_id}: {safe(entry.rule)}" if entry.rule_id is not None else ""
    why = why or (f" ({safe(entry.reason)})" if entry.reason else "")
    verdict = f" · {safe(entry.verdict)}{why}" if entry.verdict else ""
    return f"{what}{verdict} · session {session}"


def verdict_text(verdict: str) -> Text:
    style = {"allow": "green", "deny": "bold red", "rebind": "bold red", "pending": "yellow",
             "expired": "magenta"}  # fmt: skip
    return Text(verdict, style=style.get(verdict, ""))


def entry_haystack(entry: LogEntry) -> str:
    """The text the log filter searches: names, addresses, verdict, rule and message."""
    parts = [
        str(entry.kind), entry.session, entry.proto, entry.dst, str(entry.dport), *entry.names,
        entry.sni, entry.qname, entry.qtype, *entry.answers, entry.url, entry.method,
        entry.verdict, entry.rule, entry.reason, entry.message, entry.src,
    ]  # fmt: skip
    return " ".join(p for p in parts if p).lower()


def filter_matches(query: str, entry: LogEntry) -> bool:
    """Every word of ``query`` occurs in the entry's text (case-insensitive)."""
    hay = entry_haystack(entry)
    return all(word in hay for word in query.lower().split())


def rule_target(rule: Rule, width: int | None = None) -> str:
    """What a rule matches (``api.example.test:443/tcp``), made safe; a long name is
    elided in the middle to fit ``width``."""
    if rule.proto is Proto.FILE:  # "file ~/.aws/* (read)": the glob cut at its start
        access = f" ({safe(rule.access)})" if rule.access else ""
        glob = safe(rule.file or "")
        room = None if width is None else max(8, width - len(FILE_MARK) - len(access))
        if room is not None and len(glob) > room:
            glob = ELLIPSIS + glob[len(glob) - room + 1 :]
        return FILE_MARK + glob + access
    port = f":{format_port(rule.port_lo, rule.port_hi)}" if rule.port_lo else ""
    tail = port + safe(rule.path_prefix or "") + f"/{safe(rule.proto)}"
    tail += f" [{safe(rule.method)}]" if rule.method else ""
    if rule.host:
        room = None if width is None else max(12, width - len(tail))
        return shown_name(rule.host, room) + tail
    return safe(rule.cidr or "*") + tail


def lasting_rule_text(stored: Rule | None, subject: Text, now: float) -> Text:
    """The question before a lasting decision: the rule the gateway will store."""
    text = Text("Decide: ", style="bold")
    text.append_text(subject)
    if stored is None:
        text.append("\n\nNo rule will be stored (the gateway made none for this decision).")
        text.append("\n\nSend it?")
        return text
    life = lifetime_text(stored, now, LIFETIME_PARTS)
    span: dict[str, str] = {
        Lifetime.ALWAYS: "from now on, in every session",
        Lifetime.SESSION: "for this session",
    }
    action_style = "bold green" if stored.action == "allow" else "bold red"
    text.append("\n\nThis stores the rule\n\n  ")
    text.append(safe(stored.action), style=action_style)
    text.append(" " + rule_target(stored), style="bold")
    text.append(f"  ({span.get(life, life)})")
    text.append("\n\nfor every connection it matches. Store it?")
    return text
