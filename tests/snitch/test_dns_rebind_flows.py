"""Issue 12, item 9, on the packet path: a flow a name allowed never goes inside.

- a real address inside, allowed by a name (or an any-destination rule): refused and
  logged ``rebind``; an address/CIDR rule reaches it;
- ask mode: the real address behind a synthetic one is checked before the flow leaves;
  refused as ``rebind`` with the real address in the log, and never DNATed.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from snitch.core.model import Action, DecisionRequest, Mode, Proto, Rule, Target
from snitch.gateway import fakeip
from snitch.gateway.addresses import ProtectedAddresses, networks
from snitch.gateway.fakeip import FakeIPs
from snitch.gateway.flowgate import FlowGate
from tests.fakes import LogCollector, Packet, tcp
from tests.fakes import gate as make_gate

HOST = "172.29.0.1"  # the egress network's gateway: the host
OUTSIDE = "172.29.0.9"  # a member of the named egress network


def syn(dst: str, dport: int, sport: int = 40000) -> bytes:
    return tcp(dst, dport, sport, seq=1, src="172.30.5.3")


def gate(tmp_path: Path, mode: Mode, rules: list[Rule]) -> tuple[FlowGate, LogCollector]:
    protected = ProtectedAddresses(host=networks([HOST]), outside=networks(["172.29.0.0/16"]))
    return make_gate(tmp_path, mode, rules, protected=protected)


def test_a_name_rule_does_not_open_an_address_inside(tmp_path: Path) -> None:
    g, logged = gate(tmp_path, Mode.ENFORCE, [Rule(Action.ALLOW, host="*.rb.example.test")])
    for ip in (HOST, "10.11.12.13", OUTSIDE):  # names learnt however (an old answer, a bug)
        g.names.add(ip, "x.rb.example.test", 60)
    results = {}
    for ip in (HOST, "10.11.12.13", OUTSIDE):
        pkt = Packet(syn(ip, 9000))
        g.on_packet(pkt)
        results[ip] = pkt.verdict
    assert results == {HOST: "refused", "10.11.12.13": "refused", OUTSIDE: "accepted"}
    verdicts = [(e["dst"], e["verdict"]) for e in logged]
    assert verdicts == [(HOST, "rebind"), ("10.11.12.13", "rebind"), (OUTSIDE, "allow")]
    assert logged[0]["reason"].startswith(f"rebind: {HOST} is the host")
    assert logged[0]["rule"] == "allow *.rb.example.test/any"  # the rule it overrode


def test_an_address_rule_opens_it_and_a_retransmit_keeps_the_verdict(tmp_path: Path) -> None:
    rules = [Rule(Action.ALLOW, cidr=f"{HOST}/32", port_lo=9000, port_hi=9000, proto=Proto.TCP)]
    g, logged = gate(tmp_path, Mode.ENFORCE, rules)
    ok = Packet(syn(HOST, 9000))
    g.on_packet(ok)
    again = Packet(syn(HOST, 9000))
    g.on_packet(again)
    assert (ok.verdict, again.verdict) == ("accepted", "accepted")
    assert [e["verdict"] for e in logged] == ["allow"]


def test_an_any_destination_rule_does_not_open_inside(tmp_path: Path) -> None:
    g, logged = gate(tmp_path, Mode.ENFORCE, [Rule(Action.ALLOW, proto=Proto.TCP)])
    inside, outside = Packet(syn(HOST, 22)), Packet(syn(OUTSIDE, 22))
    g.on_packet(inside)
    g.on_packet(outside)
    assert (inside.verdict, outside.verdict) == ("refused", "accepted")
    assert [e["verdict"] for e in logged] == ["rebind", "allow"]


def test_audit_lets_it_through_by_design(tmp_path: Path) -> None:
    g, logged = gate(tmp_path, Mode.AUDIT, [Rule(Action.ALLOW, host="*.rb.example.test")])
    g.names.add(HOST, "x.rb.example.test", 60)
    pkt = Packet(syn(HOST, 9000))
    g.on_packet(pkt)
    assert pkt.verdict == "accepted" and logged[-1]["verdict"] == "allow"


# -- ask mode: the real address behind a synthetic one --------------------------------------


class Resolver:
    def __init__(self, answers: list[tuple[str, str | None]]) -> None:
        self.answers = answers
        self.asked: list[str] = []

    async def __call__(self, name: str) -> list[tuple[str, str | None]]:
        self.asked.append(name)
        return self.answers


def ask_gate(
    tmp_path: Path, answers: list[tuple[str, str | None]], rules: list[Rule],
    monkeypatch: pytest.MonkeyPatch,
) -> tuple[FlowGate, list[dict[str, Any]], list[tuple[str, str]]]:  # fmt: skip
    g, logged = gate(tmp_path, Mode.ASK, rules)
    g.fake = FakeIPs(g.names, Resolver(answers))
    dnat: list[tuple[str, str]] = []
    monkeypatch.setattr(fakeip, "_dnat", lambda fake, real: dnat.append((fake, real)))
    return g, logged, dnat


async def held_then_allowed(
    g: FlowGate, name: str, port: int, lifetime: str, ports: str = "this"
) -> Packet:
    assert g.fake is not None and g.asker is not None
    fake = g.fake.assign(name)
    pkt = Packet(syn(fake, port))
    g.on_packet(pkt)
    (item,) = g.asker.pending()
    assert item.names == [name]
    g.asker.decide(
        DecisionRequest(
            Action.ALLOW, pending_id=item.id, target=Target.HOST, lifetime=lifetime, port=ports
        )
    )
    await asyncio.wait_for(pkt.settled.wait(), 5)
    return pkt


@pytest.mark.parametrize("lifetime", ["once", "always"])
def test_allowing_a_name_that_leads_to_the_host_is_refused_with_the_real_address(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, lifetime: str
) -> None:
    g, logged, dnat = ask_gate(tmp_path, [(HOST, "the host")], [], monkeypatch)
    pkt = asyncio.run(held_then_allowed(g, "host.rb.example.test", 9000, lifetime))
    assert pkt.verdict == "refused"
    assert dnat == []  # never routed there
    entry = logged[-1]
    assert (entry["dst"], entry["verdict"], entry["names"]) == (
        HOST, "rebind", ["host.rb.example.test"],
    )  # fmt: skip
    assert entry["reason"].startswith(f"rebind: {HOST} is the host")
    assert entry["reason"].endswith("(via synthetic 198.18.0.1)")
    assert g.fake is not None and g.fake.real_address("198.18.0.1") is None  # mitmproxy too


def test_a_mixed_answer_is_routed_to_its_outside_address(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    answers = [(OUTSIDE, None), (HOST, "the host")]
    g, logged, dnat = ask_gate(tmp_path, [(HOST, "the host"), *answers], [], monkeypatch)
    pkt = asyncio.run(held_then_allowed(g, "mixed.rb.example.test", 80, "once"))
    assert pkt.verdict == "accepted" and dnat == [("198.18.0.1", OUTSIDE)]
    assert (logged[-1]["dst"], logged[-1]["verdict"]) == (OUTSIDE, "allow")


def test_an_address_rule_lets_the_real_address_inside_through_on_its_port_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rules = [Rule(Action.ALLOW, cidr=f"{HOST}/32", port_lo=9000, port_hi=9000, proto=Proto.TCP)]
    g, logged, dnat = ask_gate(tmp_path, [(HOST, "the host")], rules, monkeypatch)
    ok = asyncio.run(held_then_allowed(g, "host.rb.example.test", 9000, "always", "any"))
    assert ok.verdict == "accepted" and dnat == [("198.18.0.1", HOST)]

    async def other_port() -> Packet:  # routed already; the name rule allows any port
        pkt = Packet(syn("198.18.0.1", 22, sport=40001))
        g.on_packet(pkt)
        await asyncio.wait_for(pkt.settled.wait(), 5)
        return pkt

    assert asyncio.run(other_port()).verdict == "refused"
    assert (logged[-1]["dst"], logged[-1]["verdict"]) == (HOST, "rebind")
