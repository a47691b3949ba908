"""Ask mode: hold flows that no rule decides until a person (or the deadline) does.

Any number of items can be pending at once; holding one never blocks another, since
each held packet simply waits in the kernel queue for its verdict while the event
loop goes on. Retransmitted SYNs of a held flow are coalesced into its item (the
copies are dropped, the first packet is kept). A decision that creates a rule is
applied to every held item the rule now decides.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass

from snitch.events import EventBus
from snitch.model import (
    Action,
    Decision,
    DecisionRequest,
    FlowKey,
    Pending,
    Proto,
    Query,
    Rule,
    Target,
)
from snitch.queue import QueuedPacket
from snitch.rulebook import RuleBook

DEFAULT_TIMEOUT = 60.0
ONCE_MEMORY_SECONDS = 180.0  # a once-decision also covers its flow's late retransmits


class DecideError(ValueError):
    """A decision that cannot be applied; ``status`` is the HTTP status to report."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Held:
    item: Pending
    key: FlowKey
    packet: QueuedPacket


# Called with the held packet, its key and the final decision, to give the verdict and
# log the flow (FlowGate.finish).
Finisher = Callable[[QueuedPacket, FlowKey, Decision, str, tuple[str, ...]], None]


def parent_domain(name: str) -> str:
    labels = name.split(".")
    return ".".join(labels[1:]) if len(labels) > 2 else name


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
    ) -> None:
        self.rules = rules
        self.bus = bus
        self.session = session
        self.finish = finish
        self.timeout = timeout
        self.default = default
        self.clock = clock
        self.held: dict[str, Held] = {}
        self._by_key: dict[FlowKey, str] = {}
        self._once: dict[FlowKey, tuple[Action, float]] = {}
        self._ids = itertools.count(1)
        self._task: asyncio.Task[None] | None = None

    # -- the packet path --------------------------------------------------------------------
    def once_verdict(self, key: FlowKey) -> Action | None:
        hit = self._once.get(key)
        if hit is None:
            return None
        action, until = hit
        if until < self.clock():
            del self._once[key]
            return None
        return action

    def hold(self, packet: QueuedPacket, key: FlowKey, names: tuple[str, ...]) -> None:
        """Keep ``packet`` in the kernel queue and publish it as pending."""
        existing = self._by_key.get(key)
        if existing is not None:
            # A retransmission of a held flow: drop the copy, keep the first packet.
            held = self.held[existing]
            held.item.attempts += 1
            packet.drop()
            self.bus.publish("pending", held.item.to_dict())  # the same id: an update
            return
        now = self.clock()
        item = Pending(
            id=f"{self.session[:6]}-{next(self._ids)}",
            session=self.session,
            kind="flow",
            proto=str(key.proto),
            src=key.src,
            sport=key.sport,
            dst=key.dst,
            dport=key.dport,
            names=list(names),
            created=now,
            deadline=now + self.timeout,
        )
        packet.retain()
        self.held[item.id] = Held(item, key, packet)
        self._by_key[key] = item.id
        self.bus.publish("pending", item.to_dict())

    def pending(self) -> list[Pending]:
        return [h.item for h in self.held.values()]

    # -- decisions --------------------------------------------------------------------------
    def decide(self, request: DecisionRequest, by: str = "api") -> dict[str, object]:
        """Apply a person's decision; returns the ids it decided and the rule it made."""
        if request.dry_run:
            return self.preview(request)
        if request.pattern:
            return self._decide_pattern(request, by)
        held = self.held.get(request.pending_id)
        if held is None:
            raise DecideError(409, f"{request.pending_id} is not pending (decided or expired)")
        if request.lifetime == "once":
            self._once[held.key] = (request.action, self.clock() + ONCE_MEMORY_SECONDS)
            decision = Decision(request.action, None, f"ask: {request.action} once by {by}")
            self._release(held, decision, by)
            return {"decided": [held.item.id], "rule": None}
        rule = self.rule_for(held.item, request)
        return self._apply_rule(rule, by)

    def preview(self, request: DecisionRequest) -> dict[str, object]:
        """A dry run: the rule ``decide`` would store, changing nothing (the dashboard
        shows it before a lasting decision is sent)."""
        rule: Rule | None = None
        if request.pattern:
            rule = Rule(action=request.action, host=request.pattern.lower(), source="prompt",
                        note=request.note)  # fmt: skip
            self._set_lifetime(rule, request.lifetime)
        else:
            held = self.held.get(request.pending_id)
            if held is None:
                raise DecideError(409, f"{request.pending_id} is not pending (decided or expired)")
            if request.lifetime != "once":
                rule = self.rule_for(held.item, request)
        return {"rule": rule.to_dict() if rule else None, "decided": []}

    def _decide_pattern(self, request: DecisionRequest, by: str) -> dict[str, object]:
        pattern = request.pattern.lower()
        rule = Rule(action=request.action, host=pattern, source="prompt", note=request.note)
        self._set_lifetime(rule, request.lifetime)
        if request.lifetime == "once":
            # A batch "once": every pending item whose name matches, and nothing later.
            rule.session, rule.expires_at = self.session, self.clock() + 1.0
        return self._apply_rule(rule, by)

    def rule_for(self, item: Pending, request: DecisionRequest) -> Rule:
        """The lasting rule a decision on ``item`` means (by name where one is known)."""
        name = item.names[0] if item.names else ""
        rule = Rule(action=request.action, source="prompt", note=request.note)
        target = request.target
        if not name and target in (Target.HOST, Target.DOMAIN):
            target = Target.IP
        if target is Target.HOST:
            rule.host = name
        elif target is Target.DOMAIN:
            rule.host = "*." + parent_domain(name)
        elif target is Target.IP:
            rule.cidr = f"{item.dst}/32"
        else:
            rule.cidr = _network(item.dst, request.cidr_prefix)
        if request.port == "this" and item.proto in ("tcp", "udp"):
            rule.port_lo = rule.port_hi = item.dport
        rule.proto = Proto(item.proto) if item.kind == "flow" else Proto.DNS
        self._set_lifetime(rule, request.lifetime)
        return rule

    def _set_lifetime(self, rule: Rule, lifetime: str) -> None:
        if lifetime == "session":
            rule.session = self.session
        elif lifetime not in ("always", "once"):
            from snitch.duration import parse_duration

            rule.expires_at = self.clock() + parse_duration(lifetime)

    def _apply_rule(self, rule: Rule, by: str) -> dict[str, object]:
        if rule.expires_at is None or rule.expires_at > self.clock() + 2:
            rule = self.rules.add_rule(rule)
        else:
            self.rules.add_transient(rule)
        decided = self.recheck(by)
        return {"decided": decided, "rule": rule.to_dict()}

    def recheck(self, by: str = "rules") -> list[str]:
        """Release every held item that the rules now decide (after a rule change)."""
        decided = []
        for held in list(self.held.values()):
            item = held.item
            decision = self.rules.decide(
                Query(held.key.proto, item.dst, item.dport, tuple(item.names))
            )
            if decision is not None:
                self._release(held, decision, by)
                decided.append(item.id)
        return decided

    def _release(self, held: Held, decision: Decision, by: str, topic: str = "decided") -> None:
        self.held.pop(held.item.id, None)
        self._by_key.pop(held.key, None)
        self.finish(held.packet, held.key, decision, "", tuple(held.item.names))
        self.bus.publish(
            topic,
            {
                "id": held.item.id,
                "action": str(decision.action),
                "by": by,
                "rule_id": decision.rule_id,
                "reason": decision.reason,
            },
        )

    # -- deadlines --------------------------------------------------------------------------
    def expire(self) -> list[str]:
        now = self.clock()
        expired = []
        for held in list(self.held.values()):
            if held.item.deadline <= now:
                decision = Decision(self.default, None, f"ask: expired, default {self.default}")
                self._release(held, decision, "deadline", topic="expired")
                expired.append(held.item.id)
        for key in [k for k, (_, until) in self._once.items() if until < now]:
            del self._once[key]
        return expired

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._tick())

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(0.2)
            self.expire()

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        for held in list(self.held.values()):  # fail closed: nothing held slips through
            self._release(held, Decision(Action.DENY, None, "gateway stopping"), "shutdown")


def _network(ip: str, prefix: int) -> str:
    import ipaddress

    return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False))
