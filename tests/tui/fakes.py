"""An in-memory gateway implementing tui.client.GatewayLike, and sample data."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Callable
from typing import Any

from snitch.core.model import (
    Action,
    DecisionRequest,
    EntryKind,
    Event,
    LogEntry,
    Pending,
    Proto,
    Rule,
    Target,
)
from snitch.review.client import ApiError

NOW = 1_700_000_000.0  # the fixed clock of the tests


class FakeGateway:
    """Records what the dashboard asks; a test pushes events with ``push`` and friends.

    ``fail_connects``: that many ``events()`` calls raise OSError before one succeeds
    (``down`` makes every call fail). ``conflicts``: ids whose decision raises ApiError(409).
    ``auto_decide``: answer a decision with ``decided`` events, like a real gateway.
    """

    def __init__(
        self,
        session: str = "s1",
        pending: list[Pending] | None = None,
        rules: list[Rule] | None = None,
        log: list[LogEntry] | None = None,
    ) -> None:
        self.session = session
        self.items: dict[str, Pending] = {p.id: p for p in pending or []}
        self.rule_list: list[Rule] = list(rules or [])
        self.entries: list[LogEntry] = list(log or [])
        self.decisions: list[DecisionRequest] = []
        self.previews: list[DecisionRequest] = []  # dry runs
        self.calls: list[tuple[str, Any]] = []
        self.conflicts: set[str] = set()
        self.fail_connects = 0
        self.down = False
        self.auto_decide = False
        self.connects = 0
        self.explanation: dict[str, Any] = {"decision": None, "reason": "", "matches": []}
        self.replay: list[Event] = []  # sent after the queue on every (re)connect
        self._queues: list[asyncio.Queue[Event | None]] = []
        self._next_rule = max([r.id or 0 for r in self.rule_list], default=0) + 1

    # -- test controls ----------------------------------------------------------------------
    @property
    def subscribed(self) -> bool:
        return bool(self._queues)

    def push(self, topic: str, data: dict[str, Any]) -> None:
        for queue in self._queues:
            queue.put_nowait(Event(topic, data))

    def add_pending(self, item: Pending) -> None:
        self.items[item.id] = item
        self.push("pending", item.to_dict())

    def resolve(self, pending_id: str, action: str = "allow", topic: str = "decided") -> None:
        self.items.pop(pending_id, None)
        self.push(topic, {"id": pending_id, "action": action, "by": "test", "rule": None})

    def add_log(self, entry: LogEntry) -> None:
        self.entries.append(entry)
        self.push("log", entry.to_dict())

    def end_streams(self) -> None:
        for queue in self._queues:
            queue.put_nowait(None)

    def _check(self, what: str, arg: Any = None) -> None:
        self.calls.append((what, arg))
        if self.down:
            raise ApiError(503, f"gateway of session {self.session} not reachable")

    # -- GatewayLike ------------------------------------------------------------------------
    async def info(self) -> dict[str, Any]:
        self._check("info")
        return {"session": self.session}

    async def pending(self) -> list[Pending]:
        self._check("pending")
        return list(self.items.values())

    async def rules(self) -> list[Rule]:
        self._check("rules")
        return [dataclasses.replace(r) for r in self.rule_list]

    async def log(self, limit: int = 500) -> list[LogEntry]:
        self._check("log", limit)
        return self.entries[-limit:]

    async def explain(self, host: str, port: int = 0, proto: str = "tcp") -> dict[str, Any]:
        self._check("explain", (host, port, proto))
        return self.explanation

    async def decide(self, request: DecisionRequest) -> dict[str, Any]:
        self._check("decide", request)
        if request.dry_run:  # like the gateway: the rule it would store, nothing changed
            self.previews.append(request)
            if not request.pattern and request.pending_id not in self.items:
                raise ApiError(409, "not pending")
            would = self._rule_for(request, self._targets(request))
            return {"rule": would.to_dict() if would else None, "decided": []}
        self.decisions.append(request)
        if request.pending_id in self.conflicts:
            self.items.pop(request.pending_id, None)
            raise ApiError(409, "already decided")
        ids = self._targets(request)
        made = self._rule_for(request, ids)
        if made is not None:  # a lasting rule, and no "rules" event (like the gateway)
            made.id = self._next_rule
            self._next_rule += 1
            self.rule_list.append(made)
        if self.auto_decide:
            for pending_id in ids:
                self.resolve(pending_id, str(request.action))
        return {"decided": ids, "rule": made.to_dict() if made else None}

    def _targets(self, request: DecisionRequest) -> list[str]:
        if request.pattern:
            pat = request.pattern.removeprefix("*")
            return [i for i, p in self.items.items() if p.label.endswith(pat)]
        return [request.pending_id] if request.pending_id in self.items else []

    def _rule_for(self, request: DecisionRequest, ids: list[str]) -> Rule | None:
        if request.lifetime == "once":
            return None
        if request.pattern:
            return Rule(request.action, host=request.pattern, source="prompt")
        item = self.items[ids[0]] if ids else None
        if item is None:
            return Rule(request.action, source="prompt")
        if request.target in (Target.IP, Target.CIDR):
            return Rule(request.action, cidr=f"{item.dst}/32", source="prompt")
        port = item.dport if request.port == "this" else 0
        return Rule(request.action, host=item.label, port_lo=port, port_hi=port,
                    proto=Proto(item.proto), source="prompt")  # fmt: skip

    async def add_rule(self, rule: Rule) -> Rule:
        self._check("add_rule", rule)
        rule = dataclasses.replace(rule, id=self._next_rule)
        self._next_rule += 1
        self.rule_list.append(rule)
        self.push("rules", {})
        return rule

    async def remove_rule(self, rule_id: int) -> None:
        self._check("remove_rule", rule_id)
        self.rule_list = [r for r in self.rule_list if r.id != rule_id]
        self.push("rules", {})

    async def set_rule_enabled(self, rule_id: int, enabled: bool) -> None:
        self._check("set_rule_enabled", (rule_id, enabled))
        self._edit(rule_id, lambda r: dataclasses.replace(r, enabled=enabled))

    async def update_rule(self, rule: Rule) -> Rule:
        self._check("update_rule", rule)
        assert rule.id is not None
        self._edit(rule.id, lambda _: rule)
        return rule

    def _edit(self, rule_id: int, change: Callable[[Rule], Rule]) -> None:
        self.rule_list = [change(r) if r.id == rule_id else r for r in self.rule_list]
        self.push("rules", {})

    async def events(self) -> AsyncIterator[Event]:
        self.calls.append(("events", None))
        if self.down or self.fail_connects > 0:
            self.fail_connects = max(0, self.fail_connects - 1)
            raise OSError(f"connection refused ({self.session})")
        queue: asyncio.Queue[Event | None] = asyncio.Queue()
        self._queues.append(queue)
        self.connects += 1
        try:
            yield Event("session", {"id": self.session})
            for item in list(self.items.values()):  # like the real API: the queue first
                yield Event("pending", item.to_dict())
            for old in self.replay:
                yield old
            while (event := await queue.get()) is not None:
                yield event
        finally:
            self._queues.remove(queue)


# -- sample data ------------------------------------------------------------------------------
def pending(
    pid: str,
    name: str = "",
    dst: str = "198.18.0.1",
    port: int = 443,
    *,
    proto: str = "tcp",
    kind: str = "flow",
    left: float = 30.0,
    attempts: int = 1,
    session: str = "s1",
) -> Pending:
    """A pending item whose deadline is ``left`` seconds after NOW."""
    return Pending(
        id=pid, session=session, kind=kind, proto=proto, src="172.30.0.2", sport=40000 + port,
        dst=dst, dport=port, names=[name] if name else [], sni=name if port == 443 else "",
        created=NOW - 2, deadline=NOW + left, attempts=attempts,
    )  # fmt: skip


def sample_pending(session: str = "s1") -> list[Pending]:
    evil = "c2VjcmV0.evil.example.test"
    return [
        pending("p1", "api.example.test", left=42, session=session),
        pending("p2", "evil.example.test", "203.0.113.9", 80, left=17, attempts=3, session=session),
        pending("p3", "", "10.20.30.40", 8080, left=4, session=session),
        pending("p4", evil, "10.99.0.53", 53, proto="dns", kind="dns", left=25, session=session),
    ]


def rule(action: Action, rid: int, source: str = "policy", **kw: Any) -> Rule:
    return Rule(action, id=rid, source=source, created=NOW, **kw)


def sample_rules() -> list[Rule]:
    tls: dict[str, Any] = {"port_lo": 443, "port_hi": 443, "proto": Proto.TCP}
    return [
        rule(Action.ALLOW, 1, host="*.pkgs.example.test", note="package index", hits=12, **tls),
        rule(Action.DENY, 2, cidr="169.254.169.254", note="cloud metadata"),
        rule(Action.ALLOW, 3, "prompt", host="api.example.test", expires_at=NOW + 300, **tls),
        rule(Action.DENY, 4, "prompt", host="*.evil.example.test", session="s1", enabled=False),
    ]


def flow(
    session: str, ago: float, dst: str, port: int, names: list[str], verdict: str,
    rule_id: int | None = None, rule: str = "",
) -> LogEntry:  # fmt: skip
    return LogEntry(
        EntryKind.FLOW, session, NOW - ago, "tcp", "172.30.0.2", 40000 + port, dst, port,
        names, verdict, rule_id, rule,
    )  # fmt: skip


def sample_log(session: str = "s1") -> list[LogEntry]:
    dns = LogEntry(EntryKind.DNS, session, NOW - 20, "udp", verdict="allow",
                   qname="files.pkgs.example.test", qtype="A", answers=["198.18.0.8"])  # fmt: skip
    return [
        flow(
            session, 30, "198.18.0.7", 443, ["pkgs.example.test"], "allow", 1,
            "allow *.pkgs.example.test:443/tcp",
        ),  # fmt: skip
        dns,
        flow(session, 10, "169.254.169.254", 80, [], "deny", 2, "deny 169.254.169.254/any"),
        flow(session, 5, "198.18.0.1", 443, ["api.example.test"], "pending"),
    ]
