"""The kernel verdict cache (snitch/gateway/kernelcache.py) with FlowGate, against a model
of the kernel's side: the nft map (elements with timeouts, flushes) and the chain that
decides a SYN from it and copies it to NFLOG. What the gateway sends to nft is parsed,
so a verdict the gateway failed to flush goes on deciding flows here, as in the kernel."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest

from snitch.core.model import Action, Mode, Rule
from snitch.gateway.asker import Asker
from snitch.gateway.events import EventBus
from snitch.gateway.flowgate import FlowGate
from snitch.gateway.kernelcache import MAP, MAX_TIMEOUT, TABLE, KernelCache, table_text
from snitch.gateway.names import NameTable
from snitch.gateway.netfilter import CACHED_MARK, DENY_MARK
from snitch.gateway.packet import parse_flow
from snitch.gateway.rulebook import RuleBook
from tests.fakes import Packet
from tests.fakes import tcp as syn

ADD = re.compile(
    rf"add element ip {TABLE} {MAP} \{{ (\S+) \. (tcp|udp) \. (\d+) "
    r"timeout (\d+)ms : 0x([0-9a-f]+) \}"
)


class Kernel:
    """The map and the chain in front of the queue, as the kernel runs them."""

    def __init__(self) -> None:
        self.elements: dict[tuple[str, str, int], tuple[int, float]] = {}  # -> mark, until
        self.installed = ""
        self.in_kernel = 0  # SYNs decided here (never queued)
        self.beats = 0
        self.gate: FlowGate | None = None

    def run(self, commands: str) -> None:
        if commands.startswith(f"table ip {TABLE}"):
            self.installed = commands
        elif commands.startswith(f"destroy element ip {TABLE} alive"):
            self.beats += 1
            assert ";" not in commands  # one command a run: libnftables reads less
        elif commands.startswith(f"add element ip {TABLE} alive"):
            pass
        elif commands == f"flush map ip {TABLE} {MAP}":
            self.elements.clear()
        else:
            found = ADD.fullmatch(commands)
            assert found, commands
            dst, proto, port, ms, mark = found.groups()
            self.elements[(dst, proto, int(port))] = (int(mark, 16), time.time() + int(ms) / 1000)

    def send(self, data: bytes) -> str:
        """A SYN from the sandbox: decided from the map, else queued to the gateway."""
        assert self.gate is not None
        key = parse_flow(data)
        hit = self.elements.get((key.dst, str(key.proto), key.dport))
        if hit is not None and hit[1] > time.time():
            self.in_kernel += 1
            self.gate.on_kernel_log(hit[0], data)  # NFLOG's copy, read later
            return "refused" if hit[0] & DENY_MARK else "accepted"
        pkt = Packet(data)
        self.gate.on_packet(pkt)
        return pkt.verdict


def setup(
    tmp_path: Path, mode: Mode, rules: list[Rule]
) -> tuple[FlowGate, Kernel, list[dict[str, Any]]]:
    bus = EventBus()
    logged: list[dict[str, Any]] = []
    bus.subscribe(lambda topic, data: logged.append(data) if topic == "log" else None)
    book = RuleBook(tmp_path / "rules.db", rules, mode, "s1")
    gate = FlowGate(book, NameTable(), bus, "s1")
    if mode is Mode.ASK:
        gate.asker = Asker(book, bus, "s1", gate.finish)
    kernel = Kernel()
    kernel.gate = gate
    cache = KernelCache(kernel, "eth1")
    cache.install()
    gate.use_kernel(cache)
    return gate, kernel, logged


def same_line(entry: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in entry.items() if k not in ("time", "sport")}


def test_the_table_queues_nothing_it_decides_and_logs_what_it_does() -> None:
    text = table_text("eth1")
    assert "flags owner" in text  # the kernel removes it with the gateway's socket
    assert 'iifname "eth1" tcp flags & (fin|syn|rst|ack) == syn meta mark @alive' in text
    assert 'iifname "eth1" meta l4proto udp ct state new meta mark @alive' in text
    assert text.count("log group 7 snaplen 80") == 3  # the two kinds of flow, the marker
    assert 'iifname "lo" ip daddr 127.0.0.1 udp dport 9 meta mark set 0x80 log' in text
    assert text.count("meta mark @alive meta mark set") == 2  # nothing while hung
    assert CACHED_MARK & DENY_MARK == 0
    with pytest.raises(Exception, match="interface"):
        table_text('eth1" accept; #')


def test_a_decided_destination_is_decided_in_the_kernel_and_logged_the_same(
    tmp_path: Path,
) -> None:
    rules = [Rule(Action.ALLOW, host="api.example.test"), Rule(Action.DENY, cidr="10.8.0.5/32")]
    gate, kernel, logged = setup(tmp_path, Mode.ENFORCE, rules)
    gate.names.add("203.0.113.5", "api.example.test", 60)
    ports = (1000, 1001, 1002, 1003)
    first = [kernel.send(syn("203.0.113.5", 443, sport=p)) for p in ports]
    denied = [kernel.send(syn("10.8.0.5", 443, sport=p)) for p in ports]
    assert first == ["accepted"] * 4 and denied == ["refused"] * 4
    # A destination's second flow puts its verdict in the kernel, which decides the rest.
    assert kernel.in_kernel == 4
    assert [e["sport"] for e in logged] == [*ports, *ports]
    # The kernel's flows are logged exactly as the queue's (rule, names, reason...).
    assert len({repr(same_line(e)) for e in logged[:4]}) == 1
    assert len({repr(same_line(e)) for e in logged[4:]}) == 1
    assert logged[0]["names"] == ["api.example.test"] and logged[4]["verdict"] == "deny"
    marks = {dst: mark for (dst, _, _), (mark, _) in kernel.elements.items()}
    assert marks["203.0.113.5"] & (CACHED_MARK | DENY_MARK) == CACHED_MARK
    assert marks["10.8.0.5"] & (CACHED_MARK | DENY_MARK) == CACHED_MARK | DENY_MARK


def test_a_rule_change_clears_the_kernel(tmp_path: Path) -> None:
    gate, kernel, logged = setup(tmp_path, Mode.ENFORCE, [Rule(Action.ALLOW, cidr="10.9.0.0/16")])
    assert [kernel.send(syn("10.9.0.5", 80, sport=p)) for p in (1, 2, 3)] == ["accepted"] * 3
    assert kernel.in_kernel == 1
    gate.rules.add_rule(Rule(Action.DENY, cidr="10.9.0.5/32"))
    assert kernel.send(syn("10.9.0.5", 80, sport=4)) == "refused"
    assert logged[-1]["verdict"] == "deny" and kernel.in_kernel == 1


def test_a_rule_expiry_ends_the_kernel_verdict(tmp_path: Path) -> None:
    soon = time.time() + 1.5  # the policy's clock is the wall clock: wait for it
    rules = [Rule(Action.ALLOW, cidr="10.7.0.0/16", expires_at=soon)]
    gate, kernel, logged = setup(tmp_path, Mode.ENFORCE, rules)
    assert [kernel.send(syn("10.7.0.5", 80, sport=p)) for p in (1, 2, 3)] == ["accepted"] * 3
    assert kernel.in_kernel == 1
    [(_, until)] = kernel.elements.values()
    assert until <= soon + 0.01  # the element times out with the rule
    while time.time() < soon:
        time.sleep(0.05)
    assert kernel.send(syn("10.7.0.5", 80, sport=4)) == "refused"
    assert logged[-1]["verdict"] == "deny"


def test_the_rule_books_expiry_check_flushes_the_kernel(tmp_path: Path) -> None:
    soon = time.time() + 3  # time enough for the set-up and two packets on a busy machine
    rules = [Rule(Action.ALLOW, cidr="10.7.0.0/16", expires_at=soon),
             Rule(Action.ALLOW, cidr="10.9.0.0/16")]  # fmt: skip
    gate, kernel, _ = setup(tmp_path, Mode.ENFORCE, rules)
    kernel.send(syn("10.9.0.5", 80, sport=1))
    kernel.send(syn("10.9.0.5", 80, sport=2))
    assert kernel.elements and time.time() < soon, "the set-up took longer than the rule lasts"
    while time.time() < soon:
        time.sleep(0.05)
    gate.rules.check_expiry()
    assert not kernel.elements


def test_a_name_change_clears_the_kernel(tmp_path: Path) -> None:
    rules = [Rule(Action.ALLOW, host="api.example.test")]
    gate, kernel, logged = setup(tmp_path, Mode.ENFORCE, rules)
    sent = [kernel.send(syn("203.0.113.5", 443, sport=p)) for p in (1, 2, 3)]
    assert sent == ["refused"] * 3 and kernel.in_kernel == 1  # no name: no rule
    gate.names.add("203.0.113.5", "api.example.test", 60)
    assert kernel.send(syn("203.0.113.5", 443, sport=4)) == "accepted"
    assert logged[-1]["names"] == ["api.example.test"] and kernel.in_kernel == 1
    kernel.send(syn("203.0.113.5", 443, sport=5))
    gate.names.add("203.0.113.5", "api.example.test", 60)  # the same again: kept
    assert kernel.send(syn("203.0.113.5", 443, sport=6)) == "accepted"
    assert kernel.in_kernel == 2


def test_a_name_expiry_ends_the_kernel_verdict(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate, kernel, _ = setup(tmp_path, Mode.ENFORCE, [Rule(Action.ALLOW, host="api.example.test")])
    now = time.time()
    gate.names.add("203.0.113.5", "api.example.test", 0, now=now - 500)  # kept 600 s: 100 s left
    assert kernel.send(syn("203.0.113.5", 443, sport=1)) == "accepted"
    assert kernel.send(syn("203.0.113.5", 443, sport=2)) == "accepted"
    [(_, until)] = kernel.elements.values()
    assert until <= gate.names.expiry("203.0.113.5") + 0.5 < now + MAX_TIMEOUT
    later = now + 101
    monkeypatch.setattr(time, "time", lambda: later)
    assert kernel.send(syn("203.0.113.5", 443, sport=3)) == "refused"


def test_a_retransmitted_syn_decided_in_the_kernel_is_logged_once(tmp_path: Path) -> None:
    _, kernel, logged = setup(tmp_path, Mode.ENFORCE, [Rule(Action.ALLOW, cidr="10.9.0.0/16")])
    kernel.send(syn("10.9.0.5", 80, sport=1))
    kernel.send(syn("10.9.0.5", 80, sport=2))
    kernel.send(syn("10.9.0.5", 80, sport=3, seq=77))
    kernel.send(syn("10.9.0.5", 80, sport=3, seq=77))
    assert kernel.in_kernel == 2 and len(logged) == 3


def test_a_line_on_its_way_during_a_flush_keeps_its_verdict(tmp_path: Path) -> None:
    gate, kernel, logged = setup(tmp_path, Mode.ENFORCE, [Rule(Action.ALLOW, cidr="10.9.0.0/16")])
    kernel.send(syn("10.9.0.5", 80, sport=1))
    kernel.send(syn("10.9.0.5", 80, sport=2))
    [(mark, _)] = kernel.elements.values()
    gate.rules.add_rule(Rule(Action.DENY, cidr="10.9.0.5/32"))  # flushed meanwhile
    gate.on_kernel_log(mark, syn("10.9.0.5", 80, sport=3))  # decided before the flush
    assert [e["verdict"] for e in logged] == ["allow", "allow", "allow"]


@pytest.mark.parametrize("mode", [Mode.AUDIT, Mode.ASK])
def test_audit_and_ask_keep_the_queue_path(tmp_path: Path, mode: Mode) -> None:
    _, kernel, _ = setup(tmp_path, mode, [Rule(Action.ALLOW, cidr="10.9.0.0/16")])
    for port in (1, 2, 3):
        kernel.send(syn("10.9.0.5", 80, sport=port))
    assert kernel.elements == {} and kernel.in_kernel == 0


def test_a_scan_of_ports_puts_nothing_in_the_kernel(tmp_path: Path) -> None:
    _, kernel, logged = setup(tmp_path, Mode.ENFORCE, [])
    for port in range(20000, 20200):
        assert kernel.send(syn("203.0.113.9", port)) == "refused"
    assert kernel.elements == {} and len(logged) == 200
