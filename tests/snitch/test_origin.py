"""Who made a decision (``Decision.origin``, logged as ``origin``), instead of searching
the reason text: a rule, the mode's default, a person, the deadline, audit mode, or ask
mode's limits."""

from __future__ import annotations

import json
from pathlib import Path

from sandbox.records import count_entries
from snitch.core.blocklist import Blocklist
from snitch.core.grammar import Origin
from snitch.core.logentry import LogEntry
from snitch.core.model import Action, Decision, DecisionRequest, Mode, Proto, Query, Rule
from snitch.core.policy import Policy
from tests.fakes import Packet, tcp
from tests.fakes import gate as fake_gate


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def origins(logged: list[dict[str, object]]) -> list[object]:
    return [e.get("origin") for e in logged]


def test_a_decision_round_trips_its_origin() -> None:
    d = Decision(Action.DENY, 3, "why", Origin.DEADLINE)
    assert Decision.from_dict(json.loads(json.dumps(d.to_dict()))) == d
    assert Decision.from_dict({"action": "allow"}).origin is Origin.DEFAULT  # an older peer


def test_rules_and_blocklist_entries_are_rules() -> None:
    policy = Policy([Rule(Action.ALLOW, host="a.test", id=1)], Blocklist(["bad.test"]))
    rule = policy.decide(Query(Proto.TCP, None, 443, ("a.test",)))
    blocked = policy.decide(Query(Proto.TCP, None, 443, ("x.bad.test",)))
    assert rule is not None and rule.origin is Origin.RULE
    assert blocked is not None and blocked.origin is Origin.RULE and blocked.rule_id is None


def test_enforce_logs_rule_and_default(tmp_path: Path) -> None:
    rules = [Rule(Action.ALLOW, cidr="203.0.113.5", id=1)]
    gate, logged = fake_gate(None, Mode.ENFORCE, rules)
    gate.on_packet(Packet(tcp("203.0.113.5", 443, sport=1)))
    gate.on_packet(Packet(tcp("203.0.113.6", 443, sport=2)))
    assert [e["verdict"] for e in logged] == ["allow", "deny"]
    assert origins(logged) == ["rule", "default"]


def test_audit_logs_audit(tmp_path: Path) -> None:
    gate, logged = fake_gate(None, Mode.AUDIT, [])
    gate.on_packet(Packet(tcp("203.0.113.5", 443, sport=1)))
    assert origins(logged) == ["audit"]


def test_ask_mode_logs_person_deadline_and_limit(tmp_path: Path) -> None:
    clock = Clock()
    gate, logged = fake_gate(tmp_path, Mode.ASK, [], clock=clock, max_pending=2)
    asker = gate.asker
    assert asker is not None
    for sport, dst in enumerate(("203.0.113.5", "203.0.113.6", "203.0.113.7"), start=1):
        gate.on_packet(Packet(tcp(dst, 443, sport=sport)))
    assert origins(logged) == ["limit"]  # the third: two items already wait
    first, second = asker.pending()
    asker.decide(DecisionRequest(Action.ALLOW, pending_id=first.id, lifetime="once"))
    clock.now = second.deadline + 1
    asker.expire()
    assert origins(logged) == ["limit", "person", "deadline"]
    assert [e["verdict"] for e in logged] == ["deny", "allow", "deny"]


def test_the_session_counts_read_origin_not_reason(tmp_path: Path) -> None:
    def flow(verdict: str, origin: str = "", reason: str = "") -> str:
        e = LogEntry.from_dict({"kind": "flow", "verdict": verdict, "origin": origin,
                                "reason": reason})  # fmt: skip
        return json.dumps(e.to_dict())

    log = tmp_path / "flows.jsonl"
    lines = [
        flow("allow", "person", "ask: allow once by api"),
        flow("deny", "deadline", "looks like anything"),
        flow("deny", "limit"),
        flow("allow", "rule", "ask: a rule's note that starts like a prompt's reason"),
        flow("deny", "", "ask: expired, default deny"),  # a log written before origin
        flow("deny", "default", "no rule matched"),
    ]
    log.write_text("\n".join(lines) + "\n")
    counts = count_entries(log)
    assert (counts["allow"], counts["deny"], counts["ask"]) == (2, 4, 4)
