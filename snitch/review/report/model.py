"""The run report's model: what a session contacted, what was refused, what files it opened.

One model, built from a session's log by ``build.py``, rendered by ``jsonout.py``,
``markdown.py`` and ``sarif.py``. Every text field here came from the sandbox's traffic
and is already in its safe form (``snitch.core.safetext.safe``: controls, bidi and
invisible characters shown as visible escapes), so no renderer can hand a reader a raw
control character; the Markdown renderer escapes its own syntax on top.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Final

SCHEMA_ID: Final = "urn:coderun:report:1"  # the $id of report.schema.json
REPORT_VERSION: Final = 1
NO_RULE: Final = "no-rule"  # what decided an endpoint when no rule did (SARIF ruleId too)


def iso_time(t: float) -> str:
    """A log time as ISO 8601 in UTC with milliseconds (``2026-12-03T07:53:34.123Z``)."""
    stamp = dt.datetime.fromtimestamp(t, tz=dt.UTC)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}Z"


@dataclass(frozen=True, slots=True, order=True)
class EndpointKey:
    """What a baseline compares: a name (the address when no verified name is known),
    a port (0 for ICMP, 53 for a lookup) and a protocol (tcp, udp, icmp, dns)."""

    name: str
    port: int
    proto: str

    def __str__(self) -> str:
        return f"{self.name}:{self.port}/{self.proto}"


@dataclass(frozen=True, slots=True)
class Process:
    """The sandbox process that asked (best effort: empty when it was not found)."""

    exe: str = ""
    pid: int = 0
    cmdline: str = ""
    parents: tuple[str, ...] = ()


@dataclass(slots=True)
class Endpoint:
    """Connections (or lookups) to one endpoint with one verdict, rule and program."""

    key: EndpointKey
    verdict: str  # allow, deny (a rebind is a deny), ask, pending, expired
    rule: str = ""  # the deciding rule's description, "" when no rule decided
    reason: str = ""
    origin: str = ""
    process: Process = field(default_factory=Process)
    addresses: list[str] = field(default_factory=list)
    connections: int = 0  # flows, lookups or refused requests
    requests: int = 0  # HTTP requests seen on its connections
    bytes_out: int = 0
    bytes_in: int = 0
    first: float = 0.0
    last: float = 0.0
    new: bool = False  # not in the baseline the run was compared with

    @property
    def rule_id(self) -> str:
        """The SARIF ruleId: the deciding rule's description, else ``no-rule``."""
        return self.rule or NO_RULE

    def seen(self, t: float) -> None:
        self.first = min(self.first, t) if self.first else t
        self.last = max(self.last, t)


@dataclass(slots=True)
class FileAccess:
    """Opens of one path of a ``--share`` with one access (read or write) and verdict."""

    path: str  # as the sandbox sees it
    access: str
    verdict: str = "allow"  # allow, or deny (a file rule, enforce mode, a person refused)
    rule: str = ""  # the deciding file rule's description, "" when no rule decided
    opens: int = 0
    bytes_read: int = 0
    bytes_written: int = 0
    processes: list[str] = field(default_factory=list)  # command lines (or exe) that opened it
    first: float = 0.0
    last: float = 0.0

    @property
    def rule_id(self) -> str:
        return self.rule or NO_RULE


@dataclass(frozen=True, slots=True)
class SessionInfo:
    """What ran (from the session's record)."""

    id: str
    command: tuple[str, ...] = ()
    image: str = ""
    mode: str = ""
    start: float | None = None
    end: float | None = None
    exit: int | None = None
    error: str | None = None


@dataclass(slots=True)
class Report:
    """A run report. ``endpoints`` are the ones let through (or still undecided),
    ``denied`` the refused attempts; both sorted by name, port and protocol."""

    session: SessionInfo
    endpoints: list[Endpoint] = field(default_factory=list)
    denied: list[Endpoint] = field(default_factory=list)
    files: list[FileAccess] = field(default_factory=list)
    log_dropped: int = 0  # log lines the gateway dropped (the report may be incomplete)
    baseline: str | None = None  # the baseline compared with (its file or session), if any
    new: list[EndpointKey] = field(default_factory=list)  # endpoints not in that baseline

    def endpoint_keys(self) -> set[EndpointKey]:
        """Every endpoint the run tried, allowed or not (what a baseline holds)."""
        return {e.key for e in (*self.endpoints, *self.denied)}
