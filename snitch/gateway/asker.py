"""Ask mode: hold flows that no rule decides until a person (or the deadline) does.

Any number of items can be pending at once, up to a cap; holding one never blocks
another, since each held packet simply waits in the kernel queue for its verdict while
the event loop goes on. Retransmitted SYNs of a held flow are coalesced into its item
(the copies are dropped, the first packet is kept); other connections to the same
destination join the same item (``Pending.flows``) and one decision releases them all.
Caps, grouping and the rate limit are described in snitch/gateway/flood.py.

A decision ``once`` releases exactly the connections held at that moment, nothing
later (not their 5-tuple, not a name pattern for a second); a lasting decision becomes a
rule and is applied to every held item the rule now decides. A name the sandbox merely
claimed (an SNI that does not lead to the address) is never a rule's target, and no
rule is ever made for a synthetic address.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from snitch.core.apitypes import DecideResult
from snitch.core.decide import DecideError, rule_for, set_lifetime
from snitch.core.fileask import FileAsk, file_query
from snitch.core.grammar import Lifetime, Origin, Topic, is_synthetic_address
from snitch.core.model import (
    Action,
    Decision,
    DecisionRequest,
    FlowKey,
    Pending,
    PendingKind,
    PromptCounts,
    Proto,
    Rule,
)
from snitch.core.policy import Policy, check_rule
from snitch.core.process import ProcessInfo
from snitch.core.settings import DEFAULT_MAX_PENDING, PROMPT_RATE
from snitch.gateway.events import EventBus
from snitch.gateway.flood import (
    MAX_FLOWS_PER_ITEM,
    TokenBucket,
    refused_full,
    refused_item_full,
    refused_rate,
)
from snitch.gateway.held import GroupKey, Held
from snitch.gateway.queue import QueuedPacket
from snitch.gateway.rulebook import RuleBook

if TYPE_CHECKING:
    from snitch.gateway.fakeip import FakeIPs
    from snitch.gateway.requestgate import SeenRequest

__all__ = ["Asker", "DecideError", "claimed_note"]

DEFAULT_TIMEOUT = 60.0
# Called with the held packet, its key and the final decision, to give the verdict and
# log the flow (FlowGate.finish).
Finisher = Callable[[QueuedPacket, FlowKey, Decision, str, tuple[str, ...]], object]


def claimed_note(claimed: str) -> str:
    """How a decision on an item with an unverified name says so (in the log's reason)."""
    return f"claimed SNI {claimed}, unverified"


class Asker:
    def __init__(
        self,
        rules: RuleBook,
        bus: EventBus,
        session: str,
        finish: Finisher,
        timeout: float = DEFAULT_TIMEOUT,
        default: Action = Action.DENY,
        clock: Callable[[], float] = time.time,
        max_pending: int = DEFAULT_MAX_PENDING,
    ) -> None:
        self.rules = rules
        self.bus = bus
        self.session = session
        self.finish = finish
        self.timeout = timeout
        self.default = default
        self.clock = clock
        self.max_pending = max_pending
        self.fake: FakeIPs | None = None  # set in the gateway: real addresses behind synthetic
        self.held: dict[str, Held] = {}
        self._by_key: dict[FlowKey, str] = {}
        self._by_group: dict[GroupKey, str] = {}
        self._bucket = TokenBucket(PROMPT_RATE, max_pending, clock)
        self._counts = PromptCounts(max_pending, PROMPT_RATE)
        self._published: dict[str, object] = {}
        self._ids = itertools.count(1)
        self._task: asyncio.Task[None] | None = None

    # -- the packet path --------------------------------------------------------------------
    def hold(
        self, packet: QueuedPacket, key: FlowKey, names: tuple[str, ...], claimed: str = "",
        program: str = "",
    ) -> None:  # fmt: skip
        """Keep ``packet`` in the kernel queue and publish it as pending (or refuse it at
        once when the person is being flooded). ``claimed``: a name the sandbox sent that
        was not verified to lead to ``key.dst`` (then ``names`` is empty). ``program``:
        the flow's program, when it is known to differ from its destination's item's."""
        existing = self._by_key.get(key)
        if existing is not None:
            # A retransmission of a held flow: drop the copy, keep the first packet.
            held = self.held[existing]
            held.item.attempts += 1
            packet.drop()
            self.bus.publish(Topic.PENDING, held.item.to_dict())  # the same id: an update
            return
        group: GroupKey = (str(key.proto), key.dst, key.dport, names,
                           claimed + (f"\0{program}" if program else ""))  # fmt: skip
        joined = self._by_group.get(group)
        if joined is not None:
            held = self.held[joined]
            if len(held.flows) >= MAX_FLOWS_PER_ITEM:
                self._counts.refused_full += 1
                self._refuse(packet, key, names, claimed, refused_item_full())
                return
            packet.retain()
            held.flows.append((packet, key))
            self._by_key[key] = joined
            held.item.flows += 1
            self._counts.collapsed += 1
            self.bus.publish(Topic.PENDING, held.item.to_dict())  # the same id: an update
            return
        refused = self._refused()
        if refused is not None:
            self._refuse(packet, key, names, claimed, refused)
            return
        now = self.clock()
        item = Pending(
            id=f"{self.session[:6]}-{next(self._ids)}",
            session=self.session,
            kind=PendingKind.FLOW,
            proto=str(key.proto),
            src=key.src,
            sport=key.sport,
            dst=key.dst,
            dport=key.dport,
            names=list(names),
            created=now,
            deadline=now + self.timeout,
            claimed=claimed,
            synthetic=is_synthetic_address(key.dst),
        )
        packet.retain()
        self.held[item.id] = Held(item, group, [(packet, key)])
        self._by_key[key] = item.id
        self._by_group[group] = item.id
        self.bus.publish(Topic.PENDING, item.to_dict())

    def attributed(self, key: FlowKey, found: ProcessInfo | None) -> None:
        """The process of held flow ``key`` is known: its item says so (an update)."""
        item_id = self._by_key.get(key)
        held = self.held.get(item_id) if item_id is not None else None
        if found is None or held is None:
            return
        item = held.item
        if item.pid:
            flow = next((f for f in held.flows if f[1] == key), None)
            if found.exe != item.exe and flow is not None and len(held.flows) > 1:
                # Another program's connection joined this item: asked about on its own
                # (one answer must never release a program the question did not name).
                held.flows.remove(flow)
                item.flows -= 1
                del self._by_key[key]
                self.bus.publish(Topic.PENDING, item.to_dict())
                self.hold(flow[0], key, tuple(item.names), item.claimed, found.exe)
                self.attributed(key, found)
            return
        item.pid, item.uid, item.exe = found.pid, found.uid, found.exe
        item.cmdline, item.parents = found.cmdline, list(found.parents)
        self.bus.publish(Topic.PENDING, item.to_dict())  # the same id: an update

    def _refused(self) -> str | None:
        """Why a new item may not be asked about now (the cap, the rate), counted; None
        when it may."""
        if len(self.held) >= self.max_pending:
            self._counts.refused_full += 1
            return refused_full(self.max_pending)
        if not self._bucket.take():
            self._counts.refused_rate += 1
            return refused_rate()
        return None

    def _refuse(
        self, packet: QueuedPacket, key: FlowKey, names: tuple[str, ...], claimed: str, why: str
    ) -> None:
        decision = self._marked(Decision(Action.DENY, None, why, Origin.LIMIT), claimed)
        self.finish(packet, key, decision, "", names)

    @staticmethod
    def _marked(decision: Decision, claimed: str) -> Decision:
        if not claimed:
            return decision
        return dataclasses.replace(decision, reason=f"{decision.reason} ({claimed_note(claimed)})")

    async def hold_file(self, ask: FileAsk) -> Decision:
        """Hold an open of a shared file until it is decided (a rule, a person, its
        deadline: deny). Opens of the same path and access join one item."""
        item = Pending(id="", session=self.session, kind=PendingKind.FILE, proto=str(Proto.FILE),
                       src="", sport=0, dst=ask.shown, dport=0, path=ask.path,
                       access=ask.access, pid=ask.pid, cmdline=ask.cmdline,
                       exe=ask.exe)  # fmt: skip
        decided = self.rules.decide(file_query(item))  # a rule stored since the daemon looked
        if decided is not None:
            return decided
        return await self._wait(item, (str(Proto.FILE), ask.path, 0, (ask.access,), ""))

    async def hold_request(self, seen: SeenRequest, names: tuple[str, ...]) -> Decision:
        """Hold one HTTP request (its connection goes on) until a person or the deadline
        decides. The same request again (method and URL, to the same place) joins it."""
        item = Pending(
            id="", session=self.session, kind=PendingKind.REQUEST, proto="tcp", src=seen.src,
            sport=seen.sport, dst=seen.dst, dport=seen.port, names=list(names),
            synthetic=is_synthetic_address(seen.dst), method=seen.method, url=seen.url,
            size=seen.size, content_type=seen.content_type,
        )  # fmt: skip
        return await self._wait(item, ("request", seen.dst, seen.port, names,
                                       f"{seen.method} {seen.url}"))  # fmt: skip

    async def _wait(self, item: Pending, group: GroupKey) -> Decision:
        """Publish ``item`` (or join the waiting one of ``group``) and wait for its
        decision; over the cap or the rate: refused at once."""
        waiter: asyncio.Future[Decision] = asyncio.get_running_loop().create_future()
        joined = self._by_group.get(group)
        if joined is not None:
            held = self.held[joined]
            held.waiters.append(waiter)
            held.item.flows += 1
            self._counts.collapsed += 1
            self.bus.publish(Topic.PENDING, held.item.to_dict())  # the same id: an update
            return await waiter
        refused = self._refused()
        if refused is not None:
            return Decision(Action.DENY, None, refused, Origin.LIMIT)
        now = self.clock()
        item.id = f"{self.session[:6]}-{next(self._ids)}"
        item.created, item.deadline = now, now + self.timeout
        self.held[item.id] = Held(item, group, waiters=[waiter])
        self._by_group[group] = item.id
        self.bus.publish(Topic.PENDING, item.to_dict())
        return await waiter

    def pending(self) -> list[Pending]:
        return [h.item for h in self.held.values()]

    def prompt_counts(self) -> PromptCounts:
        counts = self._counts
        counts.pending = len(self.held)
        counts.held = sum(len(h.flows) for h in self.held.values())
        return counts

    # -- decisions --------------------------------------------------------------------------
    def decide(self, request: DecisionRequest, by: str = "api") -> DecideResult:
        """Apply a person's decision; returns the ids it decided and the rule it made.

        With ``request.dry_run`` nothing changes: the answer says what would be decided
        and which rule would be stored (``dry_run: true``)."""
        if request.pattern:
            return self._decide_pattern(request, by)
        held = self.held.get(request.pending_id)
        if held is None:
            raise DecideError(409, f"{request.pending_id} is not pending (decided or expired)")
        if request.lifetime == Lifetime.ONCE:
            if request.dry_run:
                return DecideResult((held.item.id,), None, dry_run=True)
            decision = Decision(
                request.action, None, f"ask: {request.action} once by {by}", Origin.PERSON
            )
            self._release(held, decision, by)
            return DecideResult((held.item.id,))
        rule = self.rule_for(held.item, request)
        if request.dry_run:
            return self._dry_run(rule)
        return self._apply_rule(rule, by)

    def _decide_pattern(self, request: DecisionRequest, by: str) -> DecideResult:
        pattern = request.pattern.lower()
        rule = Rule(action=request.action, host=pattern, source="prompt", note=request.note)
        if request.lifetime != Lifetime.ONCE:
            self._set_lifetime(rule, request.lifetime)
            return self._dry_run(rule) if request.dry_run else self._apply_rule(rule, by)
        # A batch "once": exactly the items pending now whose name matches; no rule.
        check_rule(rule)
        matcher = Policy([rule])
        chosen = [h for h in self.held.values() if matcher.decide(h.query()) is not None]
        ids = [h.item.id for h in chosen]
        if request.dry_run:
            return DecideResult(tuple(ids), None, dry_run=True)
        reason = f"ask: {request.action} once by {by} ({pattern})"
        for held in chosen:
            self._release(held, Decision(request.action, None, reason, Origin.PERSON), by)
        return DecideResult(tuple(ids))

    def rule_for(self, item: Pending, request: DecisionRequest) -> Rule:
        """The lasting rule a decision on ``item`` means (snitch/core/decide.py)."""
        fake = self.fake
        real = fake.real_address if fake is not None else (lambda _address: None)
        return rule_for(item, request, self.session, self.clock(), real)

    def _set_lifetime(self, rule: Rule, lifetime: str) -> None:
        set_lifetime(rule, lifetime, self.session, self.clock())

    def _dry_run(self, rule: Rule) -> DecideResult:
        """What storing ``rule`` would decide now; nothing changes."""
        check_rule(rule)  # the error the real decision would get
        ids = [
            h.item.id for h in self.held.values()
            if self.rules.decide_with(rule, h.query()) is not None
        ]  # fmt: skip
        return DecideResult(tuple(ids), dataclasses.replace(rule), dry_run=True)

    def _apply_rule(self, rule: Rule, by: str) -> DecideResult:
        rule = self.rules.add_rule(rule)
        decided = self.recheck(by)
        return DecideResult(tuple(decided), dataclasses.replace(rule))

    def settle(self, item_id: str, decision: Decision, by: str) -> bool:
        """Release ``item_id`` with a decision made elsewhere (the decision service);
        False when it is no longer held."""
        held = self.held.get(item_id)
        if held is None:
            return False
        self._release(held, decision, by)
        return True

    def recheck(self, by: str = "rules") -> list[str]:
        """Release every held item that the rules now decide (after a rule change)."""
        decided = []
        for held in list(self.held.values()):
            decision = self.rules.decide(held.query())
            if decision is not None:
                self._release(held, decision, by)
                decided.append(held.item.id)
        return decided

    def _release(
        self, held: Held, decision: Decision, by: str, topic: Topic = Topic.DECIDED
    ) -> None:
        item = held.item
        self.held.pop(item.id, None)
        self._by_group.pop(held.group, None)
        final = self._marked(decision, item.claimed)
        for packet, key in held.flows:
            self._by_key.pop(key, None)
            self.finish(packet, key, final, "", tuple(item.names))
        for waiter in held.waiters:
            if not waiter.done():
                waiter.set_result(final)
        self.bus.publish(
            topic,
            {
                "id": item.id,
                "action": str(decision.action),
                "by": by,
                "rule_id": decision.rule_id,
                "reason": final.reason,
                "origin": str(final.origin),
            },
        )

    # -- deadlines --------------------------------------------------------------------------
    def expire(self) -> list[str]:
        now = self.clock()
        expired = []
        for held in list(self.held.values()):
            if held.item.deadline <= now:
                # A file is never handed over by default: its deadline denies.
                default = Action.DENY if held.item.kind == PendingKind.FILE else self.default
                why = f"ask: expired, default {default}"
                decision = Decision(default, None, why, Origin.DEADLINE)
                self._release(held, decision, "deadline", topic=Topic.EXPIRED)
                expired.append(held.item.id)
        return expired

    def publish_counts(self) -> None:
        """A ``prompts`` event when the counts changed since the last one."""
        counts = self.prompt_counts().to_dict()
        if counts != self._published:
            self._published = counts
            self.bus.publish(Topic.PROMPTS, counts)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._tick())

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(0.2)
            self.expire()
            self.publish_counts()

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        for held in list(self.held.values()):  # fail closed: nothing held slips through
            self._release(held, Decision(Action.DENY, None, "gateway stopping"), "shutdown")
