"""Revocation: when the rule that let a flow through ends, the flow ends too.

The flow gate notes which rule allowed each connection (its 5-tuple -> rule id). When
the rules change (a rule removed, disabled, edited or expired: the RuleBook's
listeners), every noted flow whose rule is no longer in force is judged again by the
rules of now; if none allows it any more, its conntrack entry is deleted
(snitch/gateway/conntrack.py) and it is logged as cut. The next packet of a cut flow is
conntrack-NEW and reaches the queue again, where ``refuses`` has it refused at once (a
TCP RST, UDP dropped) without another log line, instead of being asked about. A new TCP
connection (a SYN) on the same 5-tuple is judged like any other.

A connection allowed "once" (by a person, no rule) is that one connection: it is not
noted, and runs until it ends.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any, NamedTuple, Protocol

from snitch.core.model import Action, Decision, FlowKey, Mode, Query
from snitch.gateway.rulebook import RuleBook

log = logging.getLogger(__name__)
CUT_MEMORY_SECONDS = 120.0  # packets of a cut flow are refused this long after the last
PRUNE_AT = 16384  # noted flows beyond which the ones conntrack has forgotten are dropped
PRUNE_EVERY = 30.0  # (listing 40,000 entries costs the gateway about half a second)
NOTED_MAX = 65536  # a hard cap: the oldest noted flows are forgotten first
SYN, ACK = 0x02, 0x10
# Logs a flow line: FlowGate.log_flow(key, decision, verdict, names).
FlowLogger = Callable[[FlowKey, Decision, str, tuple[str, ...] | None], None]


class FlowTable(Protocol):
    """The part of snitch.gateway.conntrack.Conntrack the revoker uses."""

    def delete(self, key: FlowKey) -> bool: ...
    def flows(self) -> set[FlowKey]: ...


class Noted(NamedTuple):
    """Why a flow is running: the rule that allowed it, as it was then."""

    rule_id: int
    rule: str  # its description, for the log line when the flow is cut
    signature: tuple[object, ...] | None  # RuleBook.signature: a changed rule has another
    names: tuple[str, ...]
    at: float  # when noted (monotonic)


class Revoker:
    def __init__(self, rules: RuleBook, table: FlowTable, log_flow: FlowLogger) -> None:
        self.rules = rules
        self.table = table
        self.log_flow = log_flow
        self.noted: dict[FlowKey, Noted] = {}
        self.cut: dict[FlowKey, float] = {}  # cut flows -> refused until (monotonic)
        self._tasks: set[asyncio.Task[None]] = set()
        self._task: asyncio.Task[None] | None = None
        rules.listeners.append(self.rules_changed)

    # -- the packet path --------------------------------------------------------------------
    def note(self, key: FlowKey, decision: Decision, names: tuple[str, ...]) -> None:
        """A flow got its final verdict: remember the rule that allowed it."""
        rule_id = decision.rule_id
        if decision.action is Action.ALLOW and rule_id is not None:
            if self.rules.mode is Mode.AUDIT:
                return  # audit allows everything: there is nothing to revoke
            if len(self.noted) >= NOTED_MAX:
                del self.noted[next(iter(self.noted))]
            rules = self.rules
            self.noted[key] = Noted(rule_id, rules.describe(rule_id), rules.signature(rule_id),
                                    names, time.monotonic())  # fmt: skip
            self.cut.pop(key, None)
        elif key in self.noted:
            del self.noted[key]

    def refuses(self, key: FlowKey, tcp_flags: int) -> bool:
        """True for a packet of a flow that was cut (refuse it, log nothing more)."""
        until = self.cut.get(key)
        if until is None:
            return False
        now = time.monotonic()
        if until < now or (tcp_flags & (SYN | ACK)) == SYN:  # gone, or a new connection
            del self.cut[key]
            return False
        self.cut[key] = now + CUT_MEMORY_SECONDS
        return True

    # -- rule changes -----------------------------------------------------------------------
    def rules_changed(self) -> None:
        """Cut every noted flow that no rule in force allows any more."""
        doomed: list[tuple[FlowKey, Noted]] = []
        rules = self.rules
        for key, noted in list(self.noted.items()):
            rule_id = noted.rule_id
            if rules.in_force(rule_id) and rules.signature(rule_id) == noted.signature:
                continue
            decision = rules.peek(Query(key.proto, key.dst, key.dport, noted.names))
            if (decision is not None and decision.action is Action.ALLOW
                    and decision.rule_id is not None):  # fmt: skip
                # A rule allows it now (another one, or this one changed): it goes on.
                rid = decision.rule_id
                self.noted[key] = noted._replace(rule_id=rid, rule=decision.reason,
                                                 signature=rules.signature(rid))  # fmt: skip
                continue
            del self.noted[key]
            doomed.append((key, noted))
        if not doomed:
            return
        until = time.monotonic() + CUT_MEMORY_SECONDS
        for key, _ in doomed:
            self.cut[key] = until  # refused from now on, even before the entry is gone
        self._spawn(self._cut(doomed))

    async def _cut(self, doomed: list[tuple[FlowKey, Noted]]) -> None:
        keys = [key for key, _ in doomed]
        try:
            await asyncio.to_thread(self._delete, keys)
            failure = ""
        except Exception as exc:  # logged with the flows: they may still be running
            log.exception("cutting %d flows", len(keys))
            failure = f"; could not delete its conntrack entry: {exc}"
        for key, noted in doomed:
            reason = f"cut: {noted.rule} no longer applies (removed, changed, disabled, expired)"
            decision = Decision(Action.DENY, noted.rule_id, reason + failure)
            self.log_flow(key, decision, "", noted.names)

    def _delete(self, keys: list[FlowKey]) -> None:
        for key in keys:
            self.table.delete(key)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # a rule change outside the gateway's loop (tests, set-up)
            asyncio.run(coro)
            return
        task = loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- housekeeping -----------------------------------------------------------------------
    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._housekeeping())

    async def _housekeeping(self) -> None:
        while True:
            await asyncio.sleep(PRUNE_EVERY)
            try:
                await self.prune()
            except Exception:  # the table may be briefly unreadable: try again later
                log.exception("pruning the noted flows")

    async def prune(self) -> None:
        """Forget cut flows past their memory, and noted flows conntrack has forgotten."""
        now = time.monotonic()
        for key in [k for k, until in self.cut.items() if until < now]:
            del self.cut[key]
        if len(self.noted) < PRUNE_AT:
            return
        live = await asyncio.to_thread(self.table.flows)
        for key in [k for k, v in self.noted.items() if v.at < now - 1.0 and k not in live]:
            del self.noted[key]

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        for task in list(self._tasks):
            task.cancel()
