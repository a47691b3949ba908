"""The one data model shared by the gateway, the CLI and the dashboard.

Everything that crosses a boundary (gateway -> log file, gateway -> API -> dashboard,
CLI -> store) is one of these dataclasses, serialised with ``to_dict`` / ``from_dict``
into plain JSON-able dicts. Keep them free of behaviour beyond (de)serialisation.
A log line is a ``LogEntry`` (snitch/core/logentry.py).
"""

from __future__ import annotations

import dataclasses
import enum
import time
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from snitch.core.fromdict import known_fields
from snitch.core.grammar import Origin, format_port, format_target


class Proto(enum.StrEnum):
    TCP = "tcp"
    UDP = "udp"
    ICMP = "icmp"
    DNS = "dns"  # a DNS query to the gateway's resolver, decided like a flow
    FILE = "file"  # an open of a --share file (``Rule.file``/``Rule.access``), never a network flow
    ANY = "any"  # any network protocol (never a file)

    @classmethod
    def from_number(cls, number: int) -> Proto | None:
        return _PROTO_NUMBERS.get(number)


_PROTO_NUMBERS = {6: Proto.TCP, 17: Proto.UDP, 1: Proto.ICMP, 58: Proto.ICMP}


class Action(enum.StrEnum):
    ALLOW = "allow"
    DENY = "deny"


class Mode(enum.StrEnum):
    ENFORCE = "enforce"  # rules decide; unmatched flows are denied
    AUDIT = "audit"  # everything is allowed and logged
    ASK = "ask"  # unmatched flows are held until a person decides


class FlowKey(NamedTuple):
    """The 5-tuple of a connection as the sandbox sent it (a tuple: hashed in C, it is
    a dict key on the packet path)."""

    proto: Proto
    src: str
    sport: int
    dst: str
    dport: int

    def __str__(self) -> str:
        return f"{self.proto}:{self.src}:{self.sport}->{self.dst}:{self.dport}"


@dataclass(frozen=True, slots=True)
class Query:
    """What a rule is matched against: a connection or a DNS lookup."""

    proto: Proto
    dst: str | None = None  # IP address, None for a DNS lookup
    port: int = 0
    names: tuple[
        str, ...
    ] = ()  # names known for dst (DNS answers, SNI, Host), or the looked-up name
    profile: str | None = None
    image: str | None = None
    session: str | None = None
    flow: str | None = None  # str(FlowKey) of the connection; only once-rules look at it
    path: str | None = None  # HTTP(S) URL path, set only for requests seen through interception
    method: str | None = None  # HTTP method (upper case), set only with ``path``
    exe: str | None = None  # executable of the sandbox process that asked, when attributed
    file: str | None = None  # Proto.FILE: the opened path as the person knows it (``~/...``)
    access: str | None = None  # Proto.FILE: "read" or "write"
    labels: tuple[str, ...] = ()  # "KEY=VALUE" labels of the session (scope ``label:K=V``)


@dataclass(slots=True)
class Rule:
    """An allow/deny rule.

    Matches on ``host`` (exact name, or ``*.domain`` for every subdomain of domain but
    not the apex), ``cidr`` (an address or a network), ``port_lo``..``port_hi`` (0..0 for
    any port) and ``proto``. At least one of host/cidr may be set; neither means any
    destination. ``method``/``path_prefix`` narrow it to HTTP requests, ``exe`` to one
    program. A file rule (``proto`` FILE) matches ``file`` (a path glob) and ``access``
    instead. ``scope`` is ``global``, ``profile:NAME``, ``image:NAME`` or ``label:K=V``.
    Lifetime: ``once`` (one connection, ``once_key`` holds its 5-tuple), ``session``
    (``session`` holds the session id), ``expires_at`` (an absolute time), or always.
    """

    action: Action
    host: str | None = None
    cidr: str | None = None
    port_lo: int = 0
    port_hi: int = 0
    proto: Proto = Proto.ANY
    scope: str = "global"
    priority: int = 0
    path_prefix: str | None = None  # HTTP(S) URL path prefix, only with TLS interception
    method: str | None = None  # HTTP methods, comma-separated upper case ("GET,HEAD"); needs a path
    exe: str | None = None  # a glob of the asking process's executable path (``/usr/bin/curl``)
    file: str | None = None  # Proto.FILE: a path glob (``~/.aws/*``, ``**/.env``)
    access: str | None = None  # Proto.FILE: "read", "write" or None for both
    once_key: str | None = None
    session: str | None = None
    expires_at: float | None = None
    enabled: bool = True
    source: str = "cli"  # prompt, cli, import, blocklist, policy
    note: str = ""
    created: float = field(default_factory=time.time)
    hits: int = 0
    last_hit: float | None = None
    id: int | None = None

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["action"] = str(self.action)
        d["proto"] = str(self.proto)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Rule:
        kw = known_fields(cls, d)
        kw["action"] = Action(kw["action"])
        kw["proto"] = Proto(kw.get("proto", "any"))
        return cls(**kw)

    def describe(self) -> str:
        """A short human form, e.g. ``allow *.example.test:443/tcp``."""
        if self.proto == Proto.FILE:
            access = f" ({self.access})" if self.access else ""
            program = f" exe={self.exe}" if self.exe else ""
            return f"{self.action}-file {self.file}{access}{program}"
        target = format_target(self.host, self.cidr)
        if self.port_lo:
            target += f":{format_port(self.port_lo, self.port_hi)}"
        text = f"{self.action} {target}/{self.proto}"
        if self.path_prefix:
            text += f" path {self.path_prefix}"
        if self.method:
            text += f" [{self.method}]"
        if self.exe:
            text += f" exe={self.exe}"
        return text


@dataclass(frozen=True, slots=True)
class Decision:
    """A verdict with the rule that made it (``rule_id`` None when no rule did) and who
    made it (``origin``: ask it, never search ``reason``, which is for people)."""

    action: Action
    rule_id: int | None = None
    reason: str = ""
    origin: Origin = Origin.DEFAULT

    def to_dict(self) -> dict[str, Any]:
        return {"action": str(self.action), "rule_id": self.rule_id, "reason": self.reason,
                "origin": str(self.origin)}  # fmt: skip

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Decision:
        origin = Origin(d.get("origin") or Origin.DEFAULT)
        return cls(Action(d["action"]), d.get("rule_id"), d.get("reason", ""), origin)


class PendingKind(enum.StrEnum):
    """What a pending item holds (``Pending.kind``)."""

    FLOW = "flow"  # a connection
    DNS = "dns"  # a lookup
    FILE = "file"  # an open of a --share file (``path``, ``access``; no network fields)
    REQUEST = "request"  # one HTTP request (``method``, ``url``); its connection goes on


class Target(enum.StrEnum):
    """What a decision's rule matches: the name, its parent domain, the address, its /24."""

    HOST = "host"
    DOMAIN = "domain"  # *.parent-domain (e.g. *.example.test for api.example.test)
    IP = "ip"
    CIDR = "cidr"


@dataclass(slots=True)
class Pending:
    """A flow or lookup held at the gateway until a person (or its deadline) decides.

    Retransmitted SYNs of the same 5-tuple are coalesced into one item (``attempts``).

    ``names`` are *verified*: learnt from DNS answers that lead to ``dst``. A name the
    sandbox merely claimed (a TLS SNI or an HTTP Host that was not verified to lead to
    ``dst``) is in ``claimed`` and must be shown as unverified; a lasting decision on such
    an item is stored for the address, never the claimed name. ``synthetic`` says ``dst``
    is an address coderun made up for an undecided name (ask mode): no rule may ever be
    stored for it. ``flows``: connections to the same destination collapsed into this
    item (one decision releases them all).

    A ``file`` item (PendingKind.FILE) is an open of a shared file held by its FUSE
    daemon: ``path`` as the person knows it (``~/.aws/credentials``), ``dst`` the path as
    the sandbox sees it, ``access`` read or write, ``pid`` (inside the sandbox, 0 =
    unknown) and ``cmdline`` of the process that asked (the sandbox's text: show it
    through safetext). Its network fields are empty.
    """

    id: str
    session: str
    kind: str  # a PendingKind: "flow", "dns", "file" or "request"
    proto: str
    src: str
    sport: int
    dst: str
    dport: int
    names: list[str] = field(default_factory=list)
    sni: str = ""
    created: float = field(default_factory=time.time)
    deadline: float = 0.0
    attempts: int = 1
    claimed: str = ""  # a name the sandbox sent (SNI/Host) that does not lead to dst
    synthetic: bool = False  # dst is a synthetic address (ask mode), never a rule target
    flows: int = 1  # connections collapsed into this item
    path: str = ""  # a file item: the path as the person knows it (``~/...``)
    access: str = ""  # a file item: read / write
    # the process that asked (attribution, best effort; for a flow it may come in a later
    # update): pid inside the sandbox (0 = not known yet or not found), uid, exe, cmdline
    # (the sandbox's text), parents (exe of each ancestor, nearest first)
    pid: int = 0
    uid: int | None = None
    exe: str = ""
    cmdline: str = ""
    parents: list[str] = field(default_factory=list)
    # kind "request": an HTTP request held (its connection goes on); sandbox text all
    method: str = ""
    url: str = ""
    size: int = 0  # the body's announced size (Content-Length), 0 if none
    content_type: str = ""

    @property
    def label(self) -> str:
        """The best *verified* name for the destination, else the address (never the
        unverified ``claimed`` name: show that beside it, marked); a file item's path."""
        if self.kind == PendingKind.FILE:
            return self.path or self.dst
        return self.names[0] if self.names else self.dst

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Pending:
        return cls(**known_fields(cls, d))


@dataclass(slots=True)
class DecisionRequest:
    """A person's answer to a pending item (or, with ``pattern``, to every pending item
    whose name matches it, e.g. ``*.example.test``).

    ``lifetime``: ``once`` (this connection only), ``session``, ``always`` or a duration
    such as ``5m``. ``port``: ``this`` or ``any``. ``cidr_prefix`` with Target.CIDR.
    On a file item: Target.HOST is the file's path, Target.DOMAIN its folder
    (``~/.aws/*``); ``port`` ``this`` is this access (read or write), ``any`` both.
    """

    action: Action
    pending_id: str = ""
    pattern: str = ""
    target: Target = Target.HOST
    port: str = "this"
    lifetime: str = "once"
    cidr_prefix: int = 24
    note: str = ""
    dry_run: bool = False  # only say what rule this decision would store; change nothing

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["action"] = str(self.action)
        d["target"] = str(self.target)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DecisionRequest:
        kw = known_fields(cls, d)
        kw["action"] = Action(kw["action"])
        kw["target"] = Target(kw.get("target", "host"))
        return cls(**kw)


PROMPT_COUNTS = "prompts"
"""The key of :class:`PromptCounts` in the session info, and the topic of the event that
carries them whenever they change."""


@dataclass(slots=True)
class PromptCounts:
    """How ask mode kept the person from being flooded (the session info's ``prompts``
    and the ``prompts`` event): new items are capped and rate-limited, repeats grouped.

    ``refused_full``: connections refused at once because ``max_pending`` items were
    waiting (or their item held the most connections one item may); ``refused_rate``:
    refused at once because new items came faster than ``rate`` per second.
    """

    max_pending: int = 0  # at most this many items wait at once (``--max-pending``)
    rate: float = 0.0  # new items per second, on average, once a burst of max_pending is used
    pending: int = 0  # items waiting now
    held: int = 0  # connections held in them
    collapsed: int = 0  # connections that joined a waiting item instead of a new one
    refused_full: int = 0
    refused_rate: int = 0

    @property
    def refused(self) -> int:
        """Connections never shown to the person (over the cap or the rate)."""
        return self.refused_full + self.refused_rate

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PromptCounts:
        return cls(**known_fields(cls, d))


@dataclass(frozen=True, slots=True)
class Event:
    """One item of the API's event stream.

    Topics: ``pending`` (data: Pending), ``decided`` (data: {id, action, by, rule}),
    ``expired`` (data: {id, action}), ``log`` (data: LogEntry), ``rules`` (data: {}),
    ``session`` (data: session info, sent first on every stream), ``prompts`` (data:
    PromptCounts, when they changed; at most a few times a second).
    """

    topic: str
    data: dict[str, Any]
    seq: int = 0
