"""Issue 12, item 8: no rule ever targets a synthetic address (198.18.0.0/15).

Ask mode answers an undecided name with an address from 198.18.0.0/15 and the next
session hands the same address to whichever name comes first: a rule for it would let
that other name through unasked. ``rules add`` and policy files refuse such targets; a
store that holds one (from an older coderun) disables it when opened, with a warning
that ``rules list`` shows; the engine never matches one even if it is switched on.
"""

from __future__ import annotations

import ipaddress
import logging
import sqlite3
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from sandbox.cli.rules import rules as rules_group
from snitch.core.grammar import SYNTHETIC_NET, normalize_cidr
from snitch.core.model import Action, Mode, Proto, Query, Rule
from snitch.core.policy import Policy
from snitch.core.policyfile import PolicyError, loads_policy
from snitch.core.store import RuleStore
from snitch.gateway.events import EventBus
from snitch.gateway.fakeip import POOL
from snitch.gateway.flowgate import FlowGate
from snitch.gateway.names import NameTable
from snitch.gateway.rulebook import RuleBook
from tests.fakes import Packet, tcp


def old_store_with(path: Path, cidr: str) -> int:
    """A store as an older coderun left it: an allow rule for a synthetic address."""
    RuleStore(path).close()
    with sqlite3.connect(path) as conn:
        cur = conn.execute(
            "INSERT INTO rules (action, cidr, port_lo, port_hi, proto, source, created) "
            "VALUES ('allow', ?, 80, 80, 'tcp', 'prompt', ?)",
            (cidr, time.time()),
        )
        conn.execute("UPDATE meta SET value = value + 1 WHERE key = 'generation'")
        return int(cur.lastrowid or 0)


def test_the_synthetic_range_is_the_one_fakeip_hands_out() -> None:
    assert SYNTHETIC_NET == POOL


@pytest.mark.parametrize("target", ["198.18.0.1", "198.18.0.0/24", "198.19.255.254/31"])
def test_a_synthetic_target_is_refused_with_a_clear_error(target: str) -> None:
    with pytest.raises(ValueError, match=r"198\.18\.0\.0/15.*give the name"):
        normalize_cidr(target)


def test_wider_or_nearby_networks_stay_allowed() -> None:
    assert normalize_cidr("198.16.0.0/12") == "198.16.0.0/12"  # contains it: not a target in it
    assert normalize_cidr("198.20.0.1") == "198.20.0.1"


def test_rules_add_refuses_a_synthetic_target(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CODERUN_HOME", str(tmp_path))
    result = CliRunner().invoke(rules_group, ["add", "allow", "198.18.0.1", "--port", "80"])
    assert result.exit_code == 2 and "198.18.0.0/15" in result.output
    assert RuleStore(tmp_path / "rules.db").list() == []


def test_a_policy_file_with_a_synthetic_target_is_refused_at_its_line() -> None:
    text = '[[rule]]\naction = "allow"\nhost = "a.test"\n\n[[rule]]\naction = "allow"\n' \
           '  cidr = "198.18.0.0/24"\n'  # fmt: skip
    with pytest.raises(PolicyError) as err:
        loads_policy(text, "p.toml")
    assert (err.value.line, err.value.col) == (7, 3)
    assert str(err.value).startswith("p.toml:7:3: rule 2: 198.18.0.0/24 is inside")


def test_a_stored_synthetic_rule_is_disabled_on_load_with_a_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("CODERUN_HOME", str(tmp_path))
    rule_id = old_store_with(tmp_path / "rules.db", "198.18.0.1")
    with caplog.at_level(logging.WARNING, logger="snitch.core.store"):
        store = RuleStore(tmp_path / "rules.db")
    [rule] = store.list()
    assert rule.id == rule_id and not rule.enabled and "disabled by coderun" in rule.note
    assert [r.id for r in store.disabled_on_open] == [rule_id]
    assert any("198.18.0.1" in m and "disabled" in m for m in caplog.messages)
    with pytest.raises(ValueError, match="198.18.0.0/15"):
        store.set_enabled(rule_id, True)
    store.close()
    listed = CliRunner().invoke(rules_group, ["list"])
    assert listed.exit_code == 0
    assert f"warning: rule {rule_id} is off for good" in listed.output
    assert "  off  " in listed.output.splitlines()[-1]
    enable = CliRunner().invoke(rules_group, ["enable", str(rule_id)])
    assert enable.exit_code == 2 and "198.18.0.0/15" in enable.output


def test_the_next_session_does_not_let_the_first_undecided_name_through(tmp_path: Path) -> None:
    """The attack: a lasting allow for 198.18.0.1:80 stored in one session; in the next,
    evil.example.test is the first name looked up, gets 198.18.0.1, and connects."""
    old_store_with(tmp_path / "rules.db", "198.18.0.1")
    book = RuleBook(tmp_path / "rules.db", [], Mode.ASK, "next")
    gate = FlowGate(book, NameTable(), EventBus(), "next")
    from snitch.gateway.asker import Asker

    gate.asker = Asker(book, gate.bus, "next", gate.finish)
    gate.names.add("198.18.0.1", "evil.example.test", 60)
    pkt = Packet(tcp("198.18.0.1", 80))
    gate.on_packet(pkt)
    assert pkt.verdict == "" and [p.label for p in gate.asker.pending()] == ["evil.example.test"]


def test_the_engine_never_matches_a_synthetic_rule_even_switched_on() -> None:
    rules = [Rule(Action.ALLOW, cidr="198.18.0.0/24", enabled=True, id=1),
             Rule(Action.ALLOW, cidr="198.16.0.0/12", proto=Proto.UDP, id=2)]  # fmt: skip
    policy = Policy(rules)
    synthetic = str(ipaddress.ip_address("198.18.0.9"))
    assert policy.decide(Query(Proto.TCP, synthetic, 80, ("evil.example.test",))) is None
    wide = policy.decide(Query(Proto.UDP, synthetic, 53))
    assert wide is not None and wide.rule_id == 2  # a wider network is the user's own choice
