"""Issue 12, item 13: when the rule that let a flow through ends, the flow is cut.

The flow gate notes which rule allowed each flow; removing, disabling or the expiry of
that rule deletes the flow's conntrack entry (here a recording table stands in for the
kernel's; tests/e2e/test_revocation.py cuts real connections) unless another rule still
allows it, and logs the cut once. The next packets of the cut flow are refused without
more log lines; a new connection on the same 5-tuple is judged anew.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from snitch.core.model import Action, DecisionRequest, FlowKey, Mode, Proto, Rule
from snitch.core.store import RuleStore
from snitch.gateway.flowgate import FlowGate
from snitch.gateway.revocation import Revoker
from tests.fakes import ACK, SANDBOX, LogCollector, Packet, tcp, udp
from tests.fakes import gate as fake_gate


class Table:
    """Records the conntrack entries deleted."""

    def __init__(self) -> None:
        self.deleted: list[FlowKey] = []
        self.live: set[FlowKey] = set()

    def delete(self, key: FlowKey) -> bool:
        self.deleted.append(key)
        return True

    def flows(self) -> set[FlowKey]:
        return set(self.live)


def gate_with(
    tmp_path: Path, mode: Mode, rules: list[Rule]
) -> tuple[FlowGate, Table, LogCollector, list[int]]:
    """A gate whose store holds ``rules`` (their ids returned)."""
    with RuleStore(tmp_path / "rules.db") as store:
        ids = [store.add(r) for r in rules]
    gate, logged = fake_gate(tmp_path, mode, [])
    table = Table()
    gate.revoker = Revoker(gate.rules, table, gate.log_flow)
    return gate, table, logged, ids


async def settle(gate: FlowGate) -> None:
    """Let the revoker's cut (a worker thread) finish."""
    assert gate.revoker is not None
    while gate.revoker._tasks:
        await asyncio.sleep(0.01)


async def test_removing_the_rule_cuts_its_flows_and_later_packets_are_refused(
    tmp_path: Path,
) -> None:
    gate, table, logged, [rule_id] = gate_with(
        tmp_path, Mode.ENFORCE, [Rule(Action.ALLOW, cidr="203.0.113.5", port_lo=80, port_hi=80)]
    )
    syn = Packet(tcp("203.0.113.5", 80, sport=40000, seq=1))
    gate.on_packet(syn)
    echo = Packet(udp("203.0.113.5", 80, sport=40001))
    gate.on_packet(echo)
    assert (syn.verdict, echo.verdict) == ("accepted", "accepted") and len(logged) == 2
    gate.rules.remove_rule(rule_id)  # as the API, or the store's generation poll, does
    await settle(gate)
    tcp_key = FlowKey(Proto.TCP, SANDBOX, 40000, "203.0.113.5", 80)
    udp_key = FlowKey(Proto.UDP, SANDBOX, 40001, "203.0.113.5", 80)
    assert sorted(table.deleted) == sorted([tcp_key, udp_key])
    cuts = logged[2:]
    assert len(cuts) == 2 and all(c["verdict"] == "deny" for c in cuts)
    cut = "cut: allow 203.0.113.5:80/any no longer applies"
    assert all(c["reason"].startswith(cut) for c in cuts)
    # The cut flows' next packets (conntrack-NEW again): refused, nothing more logged.
    mid_stream = Packet(tcp("203.0.113.5", 80, sport=40000, seq=500, flags=ACK))
    more_udp = Packet(udp("203.0.113.5", 80, sport=40001))
    gate.on_packet(mid_stream)
    gate.on_packet(more_udp)
    assert (mid_stream.verdict, more_udp.verdict) == ("refused", "refused")
    assert len(logged) == 4
    # A new connection on the same 5-tuple is judged (and logged) like any other.
    new = Packet(tcp("203.0.113.5", 80, sport=40000, seq=7777))
    gate.on_packet(new)
    assert new.verdict == "refused" and logged[-1]["reason"] == "no rule matched"


async def test_a_flow_another_rule_still_allows_is_not_cut(tmp_path: Path) -> None:
    gate, table, logged, [narrow, wide] = gate_with(tmp_path, Mode.ENFORCE, [
        Rule(Action.ALLOW, cidr="203.0.113.5", port_lo=80, port_hi=80, proto=Proto.TCP),
        Rule(Action.ALLOW, cidr="203.0.0.0/16"),
    ])  # fmt: skip
    gate.on_packet(Packet(tcp("203.0.113.5", 80, sport=40000)))
    assert logged[-1]["rule_id"] == narrow
    gate.rules.set_enabled(narrow, False)
    await settle(gate)
    assert table.deleted == [] and len(logged) == 1
    gate.rules.remove_rule(wide)  # now nothing allows it
    await settle(gate)
    assert table.deleted == [FlowKey(Proto.TCP, SANDBOX, 40000, "203.0.113.5", 80)]


async def test_a_rule_changed_to_no_longer_match_cuts_its_flows(tmp_path: Path) -> None:
    gate, table, logged, [rule_id] = gate_with(
        tmp_path, Mode.ENFORCE, [Rule(Action.ALLOW, cidr="203.0.0.0/16", proto=Proto.TCP)]
    )
    gate.on_packet(Packet(tcp("203.0.113.5", 80, sport=1)))
    gate.on_packet(Packet(tcp("10.8.0.5", 80, sport=2)))  # denied: nothing to cut later
    gate.rules.update_rule(Rule(Action.ALLOW, cidr="203.0.0.0/16", proto=Proto.UDP, id=rule_id))
    await settle(gate)
    assert table.deleted == [FlowKey(Proto.TCP, SANDBOX, 1, "203.0.113.5", 80)]
    gate.on_packet(Packet(udp("203.0.113.5", 53, sport=3)))
    gate.rules.update_rule(Rule(Action.ALLOW, cidr="203.0.0.0/16", proto=Proto.UDP, id=rule_id,
                                note="a note is no change"))  # fmt: skip
    await settle(gate)
    assert len(table.deleted) == 1


async def test_an_expired_rule_cuts_its_flows(tmp_path: Path) -> None:
    soon = time.time() + 0.3
    gate, table, logged, _ = gate_with(
        tmp_path, Mode.ENFORCE, [Rule(Action.ALLOW, cidr="203.0.113.5", expires_at=soon)]
    )
    gate.on_packet(Packet(udp("203.0.113.5", 53, sport=5353)))
    gate.rules.check_expiry()
    assert table.deleted == []
    while time.time() < soon:
        await asyncio.sleep(0.02)
    gate.rules.check_expiry()  # the rule book's watch does this every quarter second
    await settle(gate)
    assert table.deleted == [FlowKey(Proto.UDP, SANDBOX, 5353, "203.0.113.5", 53)]
    assert logged[-1]["reason"].startswith("cut:")


async def test_a_person_s_decisions_once_and_lasting(tmp_path: Path) -> None:
    """A once-allowed connection is that connection: no rule ends, nothing is cut. A
    lasting decision's rule, removed, cuts the flows it let through."""
    gate, table, logged, _ = gate_with(tmp_path, Mode.ASK, [])
    assert gate.asker is not None
    gate.names.add("203.0.113.5", "api.example.test", 60)
    once = Packet(tcp("203.0.113.5", 443, sport=1))
    gate.on_packet(once)
    [item] = gate.asker.pending()
    gate.asker.decide(DecisionRequest(Action.ALLOW, pending_id=item.id, lifetime="once"))
    lasting = Packet(tcp("203.0.113.5", 80, sport=2))
    gate.on_packet(lasting)
    [item] = gate.asker.pending()
    result = gate.asker.decide(DecisionRequest(Action.ALLOW, pending_id=item.id,
                                               lifetime="always"))  # fmt: skip
    assert (once.verdict, lasting.verdict) == ("accepted", "accepted")
    assert result.rule is not None and result.rule.id is not None
    gate.rules.remove_rule(result.rule.id)
    await settle(gate)
    assert table.deleted == [FlowKey(Proto.TCP, SANDBOX, 2, "203.0.113.5", 80)]


async def test_audit_mode_notes_nothing(tmp_path: Path) -> None:
    rules = [Rule(Action.ALLOW, cidr="203.0.113.5")]
    gate, table, _, [rule_id] = gate_with(tmp_path, Mode.AUDIT, rules)
    gate.on_packet(Packet(tcp("203.0.113.5", 80)))
    gate.rules.remove_rule(rule_id)
    await settle(gate)
    assert table.deleted == [] and gate.revoker is not None and not gate.revoker.noted


async def test_noted_flows_conntrack_forgot_are_pruned(tmp_path: Path, monkeypatch: Any) -> None:
    from snitch.gateway import revocation

    monkeypatch.setattr(revocation, "PRUNE_AT", 2)
    gate, table, _, _ = gate_with(tmp_path, Mode.ENFORCE, [Rule(Action.ALLOW, cidr="203.0.113.5")])
    for sport in (1, 2, 3):
        gate.on_packet(Packet(udp("203.0.113.5", 53, sport=sport)))
    assert gate.revoker is not None and len(gate.revoker.noted) == 3
    table.live = {FlowKey(Proto.UDP, SANDBOX, 2, "203.0.113.5", 53)}
    noted = gate.revoker.noted  # noted a while ago (a flow noted this second is kept)
    gate.revoker.noted = {k: v._replace(at=v.at - 5) for k, v in noted.items()}
    await gate.revoker.prune()
    assert list(gate.revoker.noted) == [FlowKey(Proto.UDP, SANDBOX, 2, "203.0.113.5", 53)]


def test_the_conntrack_listing_gives_each_entry_s_original_5_tuple() -> None:
    from snitch.gateway.conntrack import parse_listing

    text = (
        "tcp      6 431999 ESTABLISHED src=10.0.0.2 dst=203.0.113.5 sport=40000 dport=80 "
        "src=203.0.113.5 dst=172.17.0.2 sport=80 dport=40000 [ASSURED] mark=0 use=1\n"
        "udp      17 29 src=10.0.0.2 dst=203.0.113.5 sport=5353 dport=53 [UNREPLIED] "
        "src=203.0.113.5 dst=10.0.0.2 sport=53 dport=5353 mark=0 use=1\n"
        "icmp     1 29 src=10.0.0.2 dst=203.0.113.5 type=8 code=0 id=4229 src=203.0.113.5 "
        "dst=10.0.0.2 type=0 code=0 id=4229 mark=0 use=1\n"
        "sctp     132 10 src=1.2.3.4 dst=5.6.7.8 sport=1 dport=2\n"
        "tcp      6 10 garbage\n"
        "conntrack v1.4.8 (conntrack-tools): 5 flow entries have been shown.\n"
    )
    assert parse_listing(text) == {
        FlowKey(Proto.TCP, SANDBOX, 40000, "203.0.113.5", 80),
        FlowKey(Proto.UDP, SANDBOX, 5353, "203.0.113.5", 53),
        FlowKey(Proto.ICMP, SANDBOX, 4229, "203.0.113.5", 8),
    }
