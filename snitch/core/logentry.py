"""One line of a session's traffic log (``LogEntry``) and the words its lines use.

The gateway writes these (the packet path through ``flow_log_dict``), the review code and
the dashboard read them back with ``LogEntry.from_dict``.
"""

from __future__ import annotations

import dataclasses
import enum
import time
from dataclasses import dataclass, field
from typing import Any

from snitch.core.fromdict import known_fields

INBOUND_REASON = "inbound: "
"""How the reason of a flow forwarded *into* the sandbox (``run -p``) starts: such a flow
is not a connection the sandbox made (run reports leave it out)."""


class CacheEvent(enum.StrEnum):
    """The ``reason`` of the kernel verdict cache's event lines (gateway/cacheguard.py)."""

    ASIDE = "kernel-cache-aside"  # its flows' log copies were being lost: it stepped aside
    UNLOGGED = "kernel-cache-unlogged"  # ``dropped``: flows it passed that have no line
    BACK = "kernel-cache-back"  # the log caught up: it decides again
    UNREAD = "kernel-cache-unread"  # at the close, copies not read in time (not counted)


class PeekEvent(enum.StrEnum):
    """The ``reason`` of the event lines of web flows read in passing (gateway/glanceguard.py)."""

    LOST = "web-copies-lost"  # ``dropped``: NFLOG copies of such flows lost (lines may lack)


class EntryKind(enum.StrEnum):
    FLOW = "flow"
    DNS = "dns"
    HTTP = "http"
    TLS = "tls"  # a TLS connection relayed without interception: SNI and byte counts
    EVENT = "event"  # gateway lifecycle and dropped garbage
    FILE = "file"  # an open (and its close: bytes read and written) of a --share file
    LEAK = "leak"  # a secret's placeholder sent to a host it is not bound to (refused)


@dataclass(slots=True)
class LogEntry:
    """One line of a session's traffic log.

    ``kind`` says which optional fields are set: flows carry the 5-tuple, DNS entries
    ``qname``/``qtype``/``answers``, HTTP entries ``method``/``url``/``status``/sizes.
    """

    kind: EntryKind
    session: str = ""
    time: float = field(default_factory=time.time)
    proto: str = ""
    src: str = ""
    sport: int = 0
    dst: str = ""
    dport: int = 0
    names: list[str] = field(default_factory=list)
    verdict: str = ""  # allow / deny / pending / expired
    rule_id: int | None = None
    rule: str = ""  # the rule's description at decision time
    reason: str = ""
    origin: str = ""  # an Origin: who decided (rule, default, person, deadline, audit)
    qname: str = ""
    qtype: str = ""
    answers: list[str] = field(default_factory=list)
    sni: str = ""
    method: str = ""
    url: str = ""
    status: int = 0
    bytes_out: int = 0
    bytes_in: int = 0
    duration_ms: float = 0.0
    message: str = ""
    # a "log limit" event: lines dropped since the last one; a kernel-cache-unlogged
    # event (CacheEvent.UNLOGGED): flows the kernel verdict cache passed without a line
    dropped: int = 0
    # who asked (process attribution, best effort): pid inside the sandbox, 0 = unknown
    pid: int = 0
    uid: int | None = None
    exe: str = ""
    cmdline: str = ""
    parents: list[str] = field(default_factory=list)  # exe of each ancestor, nearest first
    path: str = ""  # a file entry: the path as the person knows it
    access: str = ""  # a file entry: read / write

    def to_dict(self) -> dict[str, Any]:
        """A compact dict: only fields that differ from their defaults, plus kind and time.

        On the packet path: the defaults are computed once, not per call.
        """
        out: dict[str, Any] = {"kind": str(self.kind), "time": self.time}
        for name, default in _LOG_DEFAULTS:
            value = getattr(self, name)
            if value != default:
                out[name] = value
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LogEntry:
        kw = known_fields(cls, d)
        kw["kind"] = EntryKind(kw["kind"])
        return cls(**kw)


_LOG_DEFAULTS: tuple[tuple[str, Any], ...] = tuple(
    (f.name, f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default)
    for f in dataclasses.fields(LogEntry)
    if f.name not in ("kind", "time")
)


def flow_log_dict(
    session: str, proto: str, src: str, sport: int, dst: str, dport: int,
    names: tuple[str, ...], verdict: str, rule_id: int | None, rule: str, reason: str,
    origin: str = "",
) -> dict[str, Any]:  # fmt: skip
    """``LogEntry(EntryKind.FLOW, ...).to_dict()`` without making the LogEntry: the
    packet path logs every flow (tests/snitch/test_model.py keeps the two equal)."""
    out: dict[str, Any] = {"kind": "flow", "time": time.time()}
    if session:
        out["session"] = session
    out["proto"], out["src"] = proto, src
    if sport:
        out["sport"] = sport
    out["dst"] = dst
    if dport:
        out["dport"] = dport
    if names:
        out["names"] = list(names)
    out["verdict"] = verdict
    if rule_id is not None:
        out["rule_id"] = rule_id
    if rule:
        out["rule"] = rule
    if reason:
        out["reason"] = reason
    if origin:
        out["origin"] = origin
    return out
