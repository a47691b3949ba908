"""A gateway held in memory: :class:`tui.client.GatewayLike` without a socket.

The screenshot script (``tui/screenshot.py``) shows the dashboard with it, and the
dashboard's tests drive it (``tests/fakes.py`` adds failures to it). It behaves like the
control API where the dashboard can tell: the event stream starts with a ``session``
event and the queue, a decision answers with the ids it decided and the lasting rule it
stored (a dry run stores nothing), rule changes announce themselves with ``rules``.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Callable
from typing import Any

from snitch.core.apitypes import DecideResult, SessionInfo
from snitch.core.grammar import Lifetime
from snitch.core.logentry import LogEntry
from snitch.core.model import DecisionRequest, Event, Pending, Proto, Rule, Target
from snitch.review.client import ApiError


class MemoryGateway:
    """One session's gateway: its queue, rules and log as plain lists.

    ``push`` and friends send events to every open stream; ``calls`` records what the
    dashboard asked. ``auto_decide`` answers a decision with ``decided`` events, like a
    real gateway (otherwise the caller resolves items itself).
    """

    def __init__(
        self,
        session: str = "s1",
        pending: list[Pending] | None = None,
        rules: list[Rule] | None = None,
        log: list[LogEntry] | None = None,
        info: dict[str, Any] | None = None,
    ) -> None:
        self.session = session
        self.extra: dict[str, Any] = dict(info or {})  # image, mode...
        self.items: dict[str, Pending] = {p.id: p for p in pending or []}
        self.rule_list: list[Rule] = list(rules or [])
        self.entries: list[LogEntry] = list(log or [])
        self.decisions: list[DecisionRequest] = []
        self.previews: list[DecisionRequest] = []  # dry runs
        self.calls: list[tuple[str, Any]] = []
        self.auto_decide = False
        self.connects = 0
        self.explanation: dict[str, Any] = {"decision": None, "reason": "", "matches": []}
        self.replay: list[Event] = []  # sent after the queue on every (re)connect
        self.port_state: dict[str, Any] = {"address": "", "listening": [], "forwards": []}
        self._queues: list[asyncio.Queue[Event | None]] = []
        self._next_rule = max([r.id or 0 for r in self.rule_list], default=0) + 1

    # -- what happens at the gateway ---------------------------------------------------------
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
        self.push(topic, {"id": pending_id, "action": action, "by": "memory", "rule": None})

    def add_log(self, entry: LogEntry) -> None:
        self.entries.append(entry)
        self.push("log", entry.to_dict())

    def end_streams(self) -> None:
        for queue in self._queues:
            queue.put_nowait(None)

    def _check(self, what: str, arg: Any = None) -> None:
        """Every call passes here (a subclass may fail it)."""
        self.calls.append((what, arg))

    def _connecting(self) -> None:
        """An event stream opens (a subclass may refuse it)."""

    # -- GatewayLike -------------------------------------------------------------------------
    async def info(self) -> SessionInfo:
        self._check("info")
        return self._info()

    def _info(self) -> SessionInfo:
        return SessionInfo.from_dict({"session": self.session, **self.extra})

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

    async def decide(self, request: DecisionRequest) -> DecideResult:
        self._check("decide", request)
        if request.dry_run:  # like the gateway: the rule it would store, nothing changed
            self.previews.append(request)
            if not request.pattern and request.pending_id not in self.items:
                raise ApiError(409, "not pending")
            would = self._rule_for(request, self._targets(request))
            return DecideResult((), would, dry_run=True)
        self.decisions.append(request)
        ids = self._targets(request)
        made = self._rule_for(request, ids)
        if made is not None:  # a lasting rule, and no "rules" event (like the gateway)
            made.id = self._next_rule
            self._next_rule += 1
            self.rule_list.append(made)
        if self.auto_decide:
            for pending_id in ids:
                self.resolve(pending_id, str(request.action))
        return DecideResult(tuple(ids), dataclasses.replace(made) if made else None)

    def _targets(self, request: DecisionRequest) -> list[str]:
        if request.pattern:
            pat = request.pattern.removeprefix("*")
            return [i for i, p in self.items.items() if p.label.endswith(pat)]
        return [request.pending_id] if request.pending_id in self.items else []

    def _rule_for(self, request: DecisionRequest, ids: list[str]) -> Rule | None:
        if request.lifetime == Lifetime.ONCE:
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
        if rule.id is None:
            raise ApiError(400, "a rule to update needs its id")
        self._edit(rule.id, lambda _: rule)
        return rule

    def _edit(self, rule_id: int, change: Callable[[Rule], Rule]) -> None:
        self.rule_list = [change(r) if r.id == rule_id else r for r in self.rule_list]
        self.push("rules", {})

    async def ports(self) -> dict[str, Any]:
        self._check("ports")
        return self.port_state

    async def forward(self, port: int, host_port: int) -> dict[str, Any]:
        self._check("forward", (port, host_port))
        fwd = {"port": port, "host_port": host_port, "bind": "127.0.0.1",
               "socket": f"fwd-{port}.sock", "connections": 0}  # fmt: skip
        self.port_state["forwards"].append(fwd)
        self.push("ports", self.port_state)
        return fwd

    async def events(self) -> AsyncIterator[Event]:
        self.calls.append(("events", None))
        self._connecting()
        queue: asyncio.Queue[Event | None] = asyncio.Queue()
        self._queues.append(queue)
        self.connects += 1
        try:
            yield Event("session", self._info().to_dict())
            for item in list(self.items.values()):  # like the real API: the queue first
                yield Event("pending", item.to_dict())
            for old in self.replay:
                yield old
            while (event := await queue.get()) is not None:
                yield event
        finally:
            self._queues.remove(queue)
