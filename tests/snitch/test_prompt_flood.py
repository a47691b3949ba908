"""Issue 12, item 7: a sandbox cannot flood the person deciding.

Held items are grouped by destination, capped per session and rate-limited; what was
collapsed and refused is counted (session info ``prompts`` and the ``prompts`` event).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from snitch.core.model import Action, DecisionRequest, Mode, PromptCounts
from snitch.core.settings import PROMPT_RATE
from snitch.gateway.asker import Asker
from snitch.gateway.flood import MAX_FLOWS_PER_ITEM
from snitch.gateway.flowgate import FlowGate
from tests.fakes import Packet, tcp
from tests.fakes import gate as fake_gate


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def ask_gate(
    tmp_path: Path, max_pending: int = 50, clock: Clock | None = None
) -> tuple[FlowGate, Asker, list[tuple[str, dict[str, Any]]]]:
    kw: dict[str, Any] = {"max_pending": max_pending}
    if clock is not None:
        kw["clock"] = clock
    gate, collected = fake_gate(tmp_path, Mode.ASK, [], **kw)
    assert gate.asker is not None
    return gate, gate.asker, collected.events


def connect(gate: FlowGate, dst: str, dport: int, sport: int) -> Packet:
    pkt = Packet(tcp(dst, dport, sport=sport, seq=sport))
    gate.on_packet(pkt)
    return pkt


def test_connections_to_one_destination_are_one_item_and_one_decision_releases_them(
    tmp_path: Path,
) -> None:
    gate, asker, events = ask_gate(tmp_path)
    gate.names.add("203.0.113.5", "api.example.test", 60)
    held = [connect(gate, "203.0.113.5", 443, sport) for sport in range(40000, 40010)]
    other_port = connect(gate, "203.0.113.5", 80, 41000)
    items = asker.pending()
    assert sorted((p.dport, p.flows) for p in items) == [(80, 1), (443, 10)]
    assert all(p.verdict == "" for p in [*held, other_port])  # all still held
    counts = asker.prompt_counts()
    assert (counts.pending, counts.held, counts.collapsed) == (2, 11, 9)
    group = next(p for p in items if p.dport == 443)
    asker.decide(DecisionRequest(Action.ALLOW, pending_id=group.id, lifetime="once"))
    assert [p.verdict for p in held] == ["accepted"] * 10 and other_port.verdict == ""
    logged = [d for t, d in events if t == "log"]
    assert len(logged) == 10 and {d["sport"] for d in logged} == set(range(40000, 40010))
    assert [t for t, d in events if t == "decided"] == ["decided"]


def test_items_beyond_the_cap_are_refused_at_once_and_counted(tmp_path: Path) -> None:
    gate, asker, events = ask_gate(tmp_path, max_pending=3)
    pkts = [connect(gate, f"203.0.113.{i}", 443, 40000 + i) for i in range(1, 6)]
    assert [p.verdict for p in pkts] == ["", "", "", "refused", "refused"]
    assert len(asker.pending()) == 3
    refused = [d for t, d in events if t == "log"]
    assert len(refused) == 2 and all("--max-pending" in d["reason"] for d in refused)
    # A repeat of a waiting destination still joins its item: it is not a new prompt.
    again = connect(gate, "203.0.113.1", 443, 41000)
    assert again.verdict == "" and asker.pending()[0].flows == 2
    counts = asker.prompt_counts()
    assert (counts.max_pending, counts.refused_full, counts.collapsed) == (3, 2, 1)
    asker.publish_counts()
    [published] = [d for t, d in events if t == "prompts"]
    assert PromptCounts.from_dict(published) == counts
    asker.publish_counts()  # nothing changed: no second event
    assert len([t for t, _ in events if t == "prompts"]) == 1


def test_new_items_are_rate_limited_after_a_burst(tmp_path: Path) -> None:
    clock = Clock()
    gate, asker, events = ask_gate(tmp_path, max_pending=5, clock=clock)
    first = [connect(gate, f"203.0.113.{i}", 443, 40000 + i) for i in range(1, 6)]
    assert all(p.verdict == "" for p in first)  # the burst
    for item in asker.pending():  # decided at once: room again, but no tokens yet
        asker.decide(DecisionRequest(Action.DENY, pending_id=item.id, lifetime="once"))
    early = connect(gate, "198.51.100.1", 443, 41000)
    assert early.verdict == "refused" and asker.prompt_counts().refused_rate == 1
    assert "faster than" in [d for t, d in events if t == "log"][-1]["reason"]
    clock.now += 1.0 / PROMPT_RATE  # one token back
    later = connect(gate, "198.51.100.2", 443, 41001)
    assert later.verdict == "" and len(asker.pending()) == 1


def test_one_item_holds_a_bounded_number_of_connections(tmp_path: Path) -> None:
    gate, asker, _ = ask_gate(tmp_path)
    pkts = [connect(gate, "203.0.113.5", 443, 30000 + i) for i in range(MAX_FLOWS_PER_ITEM + 2)]
    assert [p.verdict for p in pkts].count("refused") == 2
    assert asker.pending()[0].flows == MAX_FLOWS_PER_ITEM
    assert asker.prompt_counts().refused_full == 2


def test_a_retransmitted_syn_is_an_attempt_not_a_new_flow(tmp_path: Path) -> None:
    gate, asker, _ = ask_gate(tmp_path)
    first = connect(gate, "203.0.113.5", 443, 40000)
    copy = connect(gate, "203.0.113.5", 443, 40000)  # same 5-tuple and sequence number
    [item] = asker.pending()
    assert (first.verdict, copy.verdict) == ("", "dropped")
    assert (item.attempts, item.flows, asker.prompt_counts().collapsed) == (2, 1, 0)
