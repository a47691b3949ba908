"""FlowGate and Asker on the packet path, with real IPv4 bytes and a real rule store."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from snitch.core.model import Action, DecisionRequest, Mode, Rule
from tests.fakes import Packet, gate, tcp


def test_enforce_accepts_allowed_refuses_the_rest_and_logs_each_once(tmp_path: Path) -> None:
    g, logged = gate(tmp_path, Mode.ENFORCE, [Rule(Action.ALLOW, cidr="10.9.0.0/16")])
    g.names.add("10.9.0.5", "api.example.test", 60)
    ok, no = Packet(tcp("10.9.0.5", 443)), Packet(tcp("10.8.0.5", 443))
    g.on_packet(ok)
    g.on_packet(no)
    assert (ok.verdict, no.verdict) == ("accepted", "refused")
    assert [(e["dst"], e["verdict"], e.get("names")) for e in logged] == [
        ("10.9.0.5", "allow", ["api.example.test"]),
        ("10.8.0.5", "deny", None),
    ]


def test_a_retransmitted_syn_is_not_logged_again_but_a_new_connection_on_its_5_tuple_is(
    tmp_path: Path,
) -> None:
    g, logged = gate(tmp_path, Mode.ENFORCE, [Rule(Action.ALLOW, cidr="10.9.0.0/16")])
    first, again = Packet(tcp("10.9.0.5", 80, seq=1000)), Packet(tcp("10.9.0.5", 80, seq=1000))
    g.on_packet(first)
    g.on_packet(again)
    assert (first.verdict, again.verdict) == ("accepted", "accepted")
    assert len(logged) == 1
    reused = Packet(tcp("10.9.0.5", 80, seq=777_000))  # same ports, another connection
    g.on_packet(reused)
    assert reused.verdict == "accepted" and len(logged) == 2
    g.rules.add_rule(Rule(Action.DENY, cidr="10.9.0.5/32"))
    later = Packet(tcp("10.9.0.5", 80, seq=5))  # a new connection is judged by today's rules
    g.on_packet(later)
    assert later.verdict == "refused" and logged[-1]["verdict"] == "deny"


def test_a_kept_verdict_ends_with_a_rule_change_a_new_name_or_an_expiry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    soon = time.time() + 0.4
    rules = [
        Rule(Action.ALLOW, cidr="10.9.0.0/16"),
        Rule(Action.ALLOW, cidr="10.7.0.0/16", expires_at=soon),
        Rule(Action.ALLOW, host="api.example.test"),
    ]
    g, logged = gate(tmp_path, Mode.ENFORCE, rules)

    def verdict(dst: str, sport: int) -> str:
        pkt = Packet(tcp(dst, 443, sport=sport))
        g.on_packet(pkt)
        return pkt.verdict

    assert [verdict("10.9.0.5", p) for p in (1, 2)] == ["accepted", "accepted"]  # 2nd: kept
    g.rules.add_rule(Rule(Action.DENY, cidr="10.9.0.5/32"))  # a rule change
    assert verdict("10.9.0.5", 3) == "refused"
    assert verdict("203.0.113.5", 4) == "refused"  # no rule for it, and kept so
    g.names.add("203.0.113.5", "api.example.test", 60)  # a name learnt (an outside address)
    assert verdict("203.0.113.5", 5) == "accepted"
    assert logged[-1]["names"] == ["api.example.test"]
    assert verdict("10.7.0.5", 6) == "accepted"
    while time.time() < soon:  # the rule's own expiry, by the wall clock
        time.sleep(0.05)
    assert verdict("10.7.0.5", 7) == "refused"
    later = time.time() + 3600  # the name's expiry
    monkeypatch.setattr(time, "time", lambda: later)
    assert verdict("203.0.113.5", 8) == "refused"
    assert len(logged) == 8  # every flow logged, kept verdict or not


def test_garbage_is_dropped_and_logged(tmp_path: Path) -> None:
    g, logged = gate(tmp_path, Mode.ENFORCE, [])
    for data in (b"", b"\x45" * 19, b"\x60" + b"\x00" * 39, tcp("10.0.0.9", 1)[:22]):
        pkt = Packet(data)
        g.on_packet(pkt)
        assert pkt.verdict == "dropped"
    assert len(logged) == 4 and all("dropped" in e["message"] for e in logged)


def test_ask_holds_coalesces_retransmits_and_a_once_decision_covers_one_flow(
    tmp_path: Path,
) -> None:
    g, logged = gate(tmp_path, Mode.ASK, [])
    assert g.asker is not None
    first, again = Packet(tcp("10.9.0.5", 443)), Packet(tcp("10.9.0.5", 443))
    g.on_packet(first)
    g.on_packet(again)  # a retransmitted SYN: dropped, counted
    assert (first.verdict, again.verdict) == ("", "dropped")
    [item] = g.asker.pending()
    assert item.attempts == 2 and not logged
    g.asker.decide(DecisionRequest(Action.ALLOW, pending_id=item.id, lifetime="once"))
    assert first.verdict == "accepted" and len(logged) == 1
    later = Packet(tcp("10.9.0.5", 443, sport=40001))  # another connection: asked again
    g.on_packet(later)
    assert later.verdict == "" and len(g.asker.pending()) == 1
