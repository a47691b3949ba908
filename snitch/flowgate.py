"""The verdict on every NEW flow the queue hands us (enforce and audit modes)."""

from __future__ import annotations

import logging

from snitch.events import EventBus
from snitch.model import Action, Decision, EntryKind, FlowKey, LogEntry, Query
from snitch.names import NameTable
from snitch.netfilter import DENY_MARK
from snitch.packet import BadPacket, parse_flow
from snitch.queue import QueuedPacket
from snitch.rulebook import RuleBook

log = logging.getLogger(__name__)


class FlowGate:
    def __init__(self, rules: RuleBook, names: NameTable, bus: EventBus, session: str) -> None:
        self.rules = rules
        self.names = names
        self.bus = bus
        self.session = session
        self.garbage = 0

    def on_packet(self, pkt: QueuedPacket) -> None:
        """Called by the queue for each NEW packet; never raises (fail closed: drop)."""
        try:
            key = parse_flow(pkt.get_payload())
        except BadPacket as exc:
            pkt.drop()
            self._dropped(str(exc))
            return
        except Exception as exc:  # pragma: no cover - a bug must not kill the gateway
            pkt.drop()
            self._dropped(f"internal error: {exc!r}")
            return
        try:
            decision = self.decide(key)
        except Exception as exc:  # pragma: no cover
            log.exception("deciding %s", key)
            decision = Decision(Action.DENY, None, f"internal error: {exc!r}")
        self.apply(pkt, decision)
        self.log_flow(key, decision)

    def decide(self, key: FlowKey) -> Decision:
        names = self.names.names_for(key.dst)
        return self.rules.verdict(Query(key.proto, key.dst, key.dport, names))

    @staticmethod
    def apply(pkt: QueuedPacket, decision: Decision) -> None:
        if decision.action is Action.ALLOW:
            pkt.accept()
        else:
            pkt.set_mark(DENY_MARK)  # refused (RST) or dropped by the FORWARD chain
            pkt.accept()

    def log_flow(self, key: FlowKey, decision: Decision, verdict: str = "") -> None:
        self.bus.log(
            LogEntry(
                EntryKind.FLOW,
                session=self.session,
                proto=str(key.proto),
                src=key.src,
                sport=key.sport,
                dst=key.dst,
                dport=key.dport,
                names=list(self.names.names_for(key.dst)),
                verdict=verdict or str(decision.action),
                rule_id=decision.rule_id,
                rule=self.rules.describe(decision.rule_id),
                reason=decision.reason,
            )
        )

    def _dropped(self, why: str) -> None:
        self.garbage += 1
        self.bus.log(
            LogEntry(
                EntryKind.EVENT, session=self.session, verdict="deny", message=f"dropped: {why}"
            )
        )
