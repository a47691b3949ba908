"""Issue 12, items 8 and 13 (the asker's part): what a decision stores and releases.

- "once" is the connections held at that moment: not their 5-tuple for minutes, and a
  batch "once" (a name pattern) is not a short-lived rule that lets later ones through;
- no rule is ever stored for a synthetic address (the name, or the real address);
- ``dry_run`` says what a decision would store and release, and changes nothing.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from snitch.core.model import Action, DecisionRequest, Mode, Target
from snitch.core.store import RuleStore
from snitch.gateway.asker import Asker, DecideError
from snitch.gateway.flowgate import FlowGate
from tests.fakes import LogCollector, Packet, tcp
from tests.fakes import gate as fake_gate


class Routes:
    """FakeIPs' part the asker uses: the real address behind a synthetic one."""

    def __init__(self, real: dict[str, str]) -> None:
        self.real = real

    def real_address(self, ip: str) -> str | None:
        return self.real.get(ip)


def ask_gate(tmp_path: Path) -> tuple[FlowGate, Asker, LogCollector]:
    g, logged = fake_gate(tmp_path, Mode.ASK, [])
    assert g.asker is not None
    return g, g.asker, logged


def stored(tmp_path: Path) -> list[str]:
    return [r.describe() for r in RuleStore(tmp_path / "rules.db").list()]


def test_once_is_one_connection_not_its_5_tuple(tmp_path: Path) -> None:
    gate, asker, logged = ask_gate(tmp_path)
    first = Packet(tcp("203.0.113.5", 443, sport=40000, seq=1000))
    gate.on_packet(first)
    [item] = asker.pending()
    asker.decide(DecisionRequest(Action.ALLOW, pending_id=item.id, lifetime="once"))
    assert first.verdict == "accepted"
    # The same 5-tuple, a new connection (another initial sequence number), a while later.
    gate.recent.clear()  # past the retransmission window
    again = Packet(tcp("203.0.113.5", 443, sport=40000, seq=99_000))
    gate.on_packet(again)
    assert again.verdict == "" and len(asker.pending()) == 1, "a once let a second one in"
    assert len(logged) == 1


def test_a_batch_once_decides_exactly_the_items_pending_then(tmp_path: Path) -> None:
    gate, asker, logged = ask_gate(tmp_path)
    gate.names.add("203.0.113.5", "a.example.test", 60)
    gate.names.add("203.0.113.6", "b.example.test", 60)
    gate.names.add("203.0.113.7", "c.other.test", 60)
    a, c = Packet(tcp("203.0.113.5", 443, sport=1)), Packet(tcp("203.0.113.7", 443, sport=2))
    gate.on_packet(a)
    gate.on_packet(c)
    result = asker.decide(DecisionRequest(Action.ALLOW, pattern="*.example.test",
                                          lifetime="once"))  # fmt: skip
    assert result.rule is None and len(result.decided) == 1
    assert (a.verdict, c.verdict) == ("accepted", "")
    later = Packet(tcp("203.0.113.6", 443, sport=3))  # matches, but came after the decision
    gate.on_packet(later)
    assert later.verdict == "", "a batch once let a later connection through"
    assert sorted(p.names[0] for p in asker.pending()) == ["b.example.test", "c.other.test"]
    assert stored(tmp_path) == []


def test_no_rule_is_stored_for_a_synthetic_address(tmp_path: Path) -> None:
    gate, asker, _ = ask_gate(tmp_path)
    gate.names.add("198.18.0.1", "evil.example.test", 60)  # a synthetic answer
    gate.on_packet(Packet(tcp("198.18.0.1", 80, sport=1)))
    [item] = asker.pending()
    assert item.synthetic and item.label == "evil.example.test"
    asker.decide(DecisionRequest(Action.ALLOW, pending_id=item.id, target=Target.IP,
                                 lifetime="always"))  # fmt: skip
    assert stored(tmp_path) == ["allow evil.example.test:80/tcp"]


def test_address_targets_on_a_synthetic_item_use_the_real_address_once_known(
    tmp_path: Path,
) -> None:
    gate, asker, _ = ask_gate(tmp_path)
    asker.fake = Routes({"198.18.0.2": "203.0.113.77"})  # type: ignore[assignment]
    gate.names.add("198.18.0.2", "api.example.test", 60)
    gate.on_packet(Packet(tcp("198.18.0.2", 443, sport=1)))
    [item] = asker.pending()
    ip = asker.rule_for(item, DecisionRequest(Action.ALLOW, target=Target.IP, lifetime="always"))
    cidr = asker.rule_for(item, DecisionRequest(Action.ALLOW, target=Target.CIDR,
                                                lifetime="always"))  # fmt: skip
    assert (ip.cidr, cidr.cidr) == ("203.0.113.77/32", "203.0.113.0/24")


def test_a_synthetic_address_without_a_name_gets_no_lasting_rule(tmp_path: Path) -> None:
    gate, asker, _ = ask_gate(tmp_path)
    gate.on_packet(Packet(tcp("198.18.3.3", 80, sport=1)))  # no name: typed by hand
    [item] = asker.pending()
    with pytest.raises(DecideError) as refused:
        asker.decide(DecisionRequest(Action.ALLOW, pending_id=item.id, lifetime="always"))
    assert "198.18.0.0/15" in str(refused.value) and refused.value.status == 409
    assert stored(tmp_path) == [] and len(asker.pending()) == 1


def test_a_dry_run_says_what_would_be_stored_and_changes_nothing(tmp_path: Path) -> None:
    gate, asker, logged = ask_gate(tmp_path)
    gate.names.add("203.0.113.5", "api.example.test", 60)
    gate.names.add("203.0.113.6", "cdn.example.test", 60)
    api, cdn = Packet(tcp("203.0.113.5", 443, sport=1)), Packet(tcp("203.0.113.6", 443, sport=2))
    gate.on_packet(api)
    gate.on_packet(cdn)
    first = asker.pending()[0]
    request = DecisionRequest(Action.ALLOW, pending_id=first.id, target=Target.DOMAIN,
                              lifetime="always", dry_run=True)  # fmt: skip
    result = asker.decide(request)
    assert result.dry_run is True
    assert result.rule is not None and result.rule.host == "*.example.test"
    assert sorted(result.decided) == sorted(p.id for p in asker.pending())
    once = asker.decide(DecisionRequest(Action.ALLOW, pending_id=first.id, dry_run=True))
    assert once.to_dict() == {"decided": [first.id], "rule": None, "dry_run": True}
    assert (api.verdict, cdn.verdict, logged) == ("", "", [])
    assert len(asker.pending()) == 2 and stored(tmp_path) == []


class SlowRoutes(Routes):
    """FakeIPs whose real lookup waits until the test lets it answer."""

    def __init__(self) -> None:
        super().__init__({})
        self.answer = asyncio.Event()

    @staticmethod
    def is_fake(ip: str) -> bool:
        return ip.startswith("198.18.")

    async def route(self, fake: str, refuse: object = None) -> str:
        await self.answer.wait()
        self.real[fake] = "203.0.113.77"
        return "203.0.113.77"


async def test_a_copy_of_a_flow_waiting_for_its_route_is_dropped_not_asked_again(
    tmp_path: Path,
) -> None:
    """Once allowed, a flow to a synthetic address waits for the real lookup and its
    DNAT; a retransmitted SYN meanwhile must neither pass unrouted nor be a new item."""
    gate, asker, logged = ask_gate(tmp_path)
    routes = SlowRoutes()
    gate.fake = routes  # type: ignore[assignment]
    gate.names.add("198.18.0.4", "api.example.test", 60)
    first = Packet(tcp("198.18.0.4", 80, sport=1, seq=5))
    gate.on_packet(first)
    [item] = asker.pending()
    asker.decide(DecisionRequest(Action.ALLOW, pending_id=item.id, lifetime="once"))
    copy = Packet(tcp("198.18.0.4", 80, sport=1, seq=5))
    gate.on_packet(copy)
    assert (first.verdict, copy.verdict, asker.pending()) == ("", "dropped", [])
    routes.answer.set()
    while first.verdict == "":
        await asyncio.sleep(0.01)
    assert first.verdict == "accepted" and len(logged) == 1
