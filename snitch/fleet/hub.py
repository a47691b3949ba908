"""The fleet in memory: who joined, what each gateway asked, who watches.

A gateway *asks* for an item no rule of its own decides. The service's rules (with the
session's context: its session id, image and labels) answer at once when they can;
otherwise the item is pending here, streamed to every dashboard that follows the
session, until a person decides (``decide``, the asker's semantics: snitch/core/decide.py)
or the gateway withdraws it (decided there, expired there, or gone). A lasting decision
is stored in the service's rule store and every pending item of the fleet that it now
decides is answered too.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from snitch.core.apitypes import DecideResult, SessionInfo
from snitch.core.decide import DecideError, rule_for, set_lifetime
from snitch.core.fleetwire import FleetAnswer
from snitch.core.grammar import Lifetime, Origin, Topic
from snitch.core.model import Action, Decision, DecisionRequest, Pending, Proto, Query, Rule
from snitch.core.policy import Policy, check_rule
from snitch.fleet.rules import FleetRules

LOG_MEMORY = 2_000  # log lines kept per session for a dashboard that joins late
EVENT_QUEUE = 10_000  # a dashboard this far behind is cut off, never waited for
GRACE = 5.0  # an item past its deadline by this much was forgotten by its gateway
IDLE = 120.0  # a session unheard of this long, with nothing pending, has gone


@dataclass
class Asked:
    item: Pending
    answer: asyncio.Future[FleetAnswer]


@dataclass(eq=False)
class Member:
    """One session of the fleet (one gateway)."""

    info: SessionInfo
    seen: float
    asked: dict[str, Asked] = field(default_factory=dict)
    log: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=LOG_MEMORY))
    streams: set[asyncio.Queue[dict[str, Any] | None]] = field(default_factory=set)

    @property
    def session(self) -> str:
        return self.info.session


class Fleet:
    def __init__(self, rules: FleetRules, clock: Callable[[], float] = time.time) -> None:
        self.rules = rules
        self.clock = clock
        self.members: dict[str, Member] = {}
        self.answered = 0  # items answered (by rule or person): the benchmark's count
        self._seq = itertools.count(1)
        rules.listeners.append(self._rules_changed)

    # -- gateways ---------------------------------------------------------------------------
    def join(self, info: SessionInfo) -> Member:
        member = self.members.get(info.session)
        if member is None:
            member = self.members[info.session] = Member(info, self.clock())
        member.info, member.seen = info, self.clock()
        self._publish(member, Topic.SESSION, info.to_dict())
        return member

    def member(self, session: str) -> Member:
        found = self.members.get(session)
        if found is None:
            raise DecideError(404, f"no session {session} in this fleet")
        return found

    def leave(self, session: str) -> None:
        member = self.members.pop(session, None)
        if member is None:
            return
        for asked in list(member.asked.values()):
            self.withdraw(member, asked.item.id, "its gateway left")
        for queue in list(member.streams):
            queue.put_nowait(None)

    def query(self, member: Member, item: Pending) -> Query:
        """An item's query in its session's context (labels scope rules)."""
        info = member.info
        return Query(
            Proto(item.proto), item.dst, item.dport, tuple(item.names),
            image=info.image or None, session=info.session, labels=info.labels,
        )  # fmt: skip

    def ask(self, session: str, item: Pending) -> asyncio.Future[FleetAnswer]:
        """The answer to ``item``: done at once when the rules decide it."""
        member = self.member(session)
        member.seen = self.clock()
        future: asyncio.Future[FleetAnswer] = asyncio.get_running_loop().create_future()
        decision = self.rules.decide(self.query(member, item))
        if decision is not None:
            self.answered += 1
            future.set_result(FleetAnswer(decision, self.rules.rule(decision.rule_id)))
            return future
        again = member.asked.get(item.id)
        if again is not None:  # asked again (a reconnect): one item, the newest future
            again.answer.cancel()
        member.asked[item.id] = Asked(item, future)
        self._publish(member, Topic.PENDING, item.to_dict())
        return future

    def withdraw(self, member: Member, item_id: str, why: str) -> None:
        """The gateway no longer waits for ``item_id`` (decided or expired there, gone)."""
        asked = member.asked.pop(item_id, None)
        if asked is None:
            return
        asked.answer.cancel()
        data = {"id": item_id, "action": str(Action.DENY), "by": "gateway", "rule_id": None,
                "reason": why, "origin": str(Origin.DEADLINE)}  # fmt: skip
        self._publish(member, Topic.EXPIRED, data)

    def report(self, session: str, lines: list[dict[str, Any]]) -> int:
        member = self.member(session)
        member.seen = self.clock()
        for line in lines:
            if not isinstance(line, dict):
                raise ValueError("a log line is an object")
            member.log.append(line)
            self._publish(member, Topic.LOG, line)
        return len(lines)

    def tick(self) -> None:
        """Forget what gateways forgot: items long past their deadline, silent sessions."""
        now = self.clock()
        for member in list(self.members.values()):
            for asked in list(member.asked.values()):
                if asked.item.deadline and asked.item.deadline + GRACE < now:
                    self.withdraw(member, asked.item.id, "past its deadline")
            if not member.asked and not member.streams and now - member.seen > IDLE:
                self.leave(member.session)

    # -- people -----------------------------------------------------------------------------
    def pending(self, session: str) -> list[Pending]:
        return [a.item for a in self.member(session).asked.values()]

    def decide(self, session: str, request: DecisionRequest, by: str = "fleet") -> DecideResult:
        member = self.member(session)
        if request.pattern:
            return self._decide_pattern(member, request, by)
        asked = member.asked.get(request.pending_id)
        if asked is None:
            raise DecideError(409, f"{request.pending_id} is not pending (decided or expired)")
        now = self.clock()
        if request.lifetime == Lifetime.ONCE:
            if not request.dry_run:
                why = f"ask: {request.action} once by {by}"
                self._settle(member, asked, FleetAnswer(Decision(request.action, None, why,
                                                                 Origin.PERSON)), by)  # fmt: skip
            return DecideResult((asked.item.id,), None, dry_run=request.dry_run)
        rule = rule_for(asked.item, request, session, now)
        return self._dry_run(rule) if request.dry_run else self._apply(rule, by)

    def _decide_pattern(self, member: Member, request: DecisionRequest, by: str) -> DecideResult:
        pattern = request.pattern.lower()
        rule = Rule(action=request.action, host=pattern, source="prompt", note=request.note)
        if request.lifetime != Lifetime.ONCE:
            set_lifetime(rule, request.lifetime, member.session, self.clock())
            return self._dry_run(rule) if request.dry_run else self._apply(rule, by)
        check_rule(rule)
        matcher = Policy([rule])
        chosen = [a for a in member.asked.values()
                  if matcher.decide(self.query(member, a.item)) is not None]  # fmt: skip
        if not request.dry_run:
            why = f"ask: {request.action} once by {by} ({pattern})"
            for asked in chosen:
                answer = FleetAnswer(Decision(request.action, None, why, Origin.PERSON))
                self._settle(member, asked, answer, by)
        return DecideResult(tuple(a.item.id for a in chosen), None, dry_run=request.dry_run)

    def _dry_run(self, rule: Rule) -> DecideResult:
        check_rule(rule)
        ids = [a.item.id for m in self.members.values() for a in m.asked.values()
               if self.rules.decide_with(rule, self.query(m, a.item)) is not None]  # fmt: skip
        return DecideResult(tuple(ids), replace(rule), dry_run=True)

    def _apply(self, rule: Rule, by: str) -> DecideResult:
        stored = self.rules.add(rule)  # the listener re-checks every pending item
        decided = self.recheck(by)
        return DecideResult(tuple(decided), replace(stored))

    def recheck(self, by: str = "rules") -> list[str]:
        """Answer every pending item of the fleet that the rules now decide."""
        decided = []
        for member in list(self.members.values()):
            for asked in list(member.asked.values()):
                decision = self.rules.decide(self.query(member, asked.item))
                if decision is not None:
                    rule = self.rules.rule(decision.rule_id)
                    self._settle(member, asked, FleetAnswer(decision, rule), by)
                    decided.append(asked.item.id)
        return decided

    def _settle(self, member: Member, asked: Asked, answer: FleetAnswer, by: str) -> None:
        member.asked.pop(asked.item.id, None)
        if not asked.answer.done():
            asked.answer.set_result(answer)
        self.answered += 1
        decision = answer.decision
        data = {"id": asked.item.id, "action": str(decision.action), "by": by,
                "rule_id": decision.rule_id, "reason": decision.reason,
                "origin": str(decision.origin)}  # fmt: skip
        self._publish(member, Topic.DECIDED, data)

    def _rules_changed(self) -> None:
        for member in self.members.values():
            self._publish(member, Topic.RULES, {})

    # -- dashboards -------------------------------------------------------------------------
    def follow(self, session: str) -> asyncio.Queue[dict[str, Any] | None]:
        """A dashboard's stream of one session: its info and pending items, then events."""
        member = self.member(session)
        queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(EVENT_QUEUE)
        queue.put_nowait({"topic": Topic.SESSION, "data": member.info.to_dict(), "seq": 0})
        for asked in member.asked.values():
            queue.put_nowait({"topic": Topic.PENDING, "data": asked.item.to_dict(), "seq": 0})
        member.streams.add(queue)
        return queue

    def unfollow(self, session: str, queue: asyncio.Queue[dict[str, Any] | None]) -> None:
        member = self.members.get(session)
        if member is not None:
            member.streams.discard(queue)

    def _publish(self, member: Member, topic: Topic, data: dict[str, Any]) -> None:
        if not member.streams:
            return
        event = {"topic": topic, "data": data, "seq": next(self._seq)}
        for queue in list(member.streams):
            try:
                queue.put_nowait(event)
            except asyncio.QueueFull:
                member.streams.discard(queue)
                with contextlib.suppress(asyncio.QueueFull):
                    queue.put_nowait(None)
