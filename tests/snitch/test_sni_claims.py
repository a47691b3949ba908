"""Issue 12, item 4: an SNI the gateway did not verify is never shown as the destination.

A bare address on a TLS port waits for its ClientHello (``FlowGate.deferred``); the SNI
vouches for the address only if the name table already maps the address to it (a real
DNS answer), or if the name may be looked up and its answer holds the address. Else the
item is held by its address with the name as ``claimed``, a lasting decision is stored
for the address, and the log marks the name as unverified. A name nobody allowed is never
looked up to check it (that lookup would carry it out).
"""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path

from snitch.core.model import Action, DecisionRequest, FlowKey, Mode, Proto, Rule, Target
from snitch.core.store import RuleStore
from snitch.gateway.proxyjudge import ProxyJudge
from tests.fakes import LogCollector
from tests.fakes import gate as fake_gate

ATTACKER = "10.66.0.9"
_ids = itertools.count(1)


def setup(
    tmp_path: Path, mode: Mode, rules: list[Rule]
) -> tuple[ProxyJudge, LogCollector, list[str]]:
    gate, logged = fake_gate(tmp_path, mode, rules)
    looked_up: list[str] = []

    async def resolve(name: str) -> list[str]:
        looked_up.append(name)
        return ["10.1.1.1"]  # the name's real address: not the attacker's

    gate.resolve = resolve
    return ProxyJudge(gate), logged, looked_up


def deferred_ctx(addon: ProxyJudge, dst: str = ATTACKER) -> FlowKey:
    """A client connection to ``dst``:443 that the gate deferred to its ClientHello."""
    key = FlowKey(Proto.TCP, "10.0.0.2", 40000 + next(_ids), dst, 443)
    addon.gate.deferred[key] = 0.0
    return key


async def test_an_unverified_sni_is_held_by_the_address_and_stored_as_the_address(
    tmp_path: Path,
) -> None:
    addon, logged, looked_up = setup(tmp_path, Mode.ASK, [])
    asker = addon.gate.asker
    assert asker is not None
    verdict = asyncio.create_task(addon.connection(deferred_ctx(addon), "pypi.test"))
    await asyncio.sleep(0)
    [item] = asker.pending()
    assert item.names == [] and item.claimed == "pypi.test" and item.label == ATTACKER
    assert looked_up == [], "the claimed name was looked up upstream before any decision"
    asker.decide(DecisionRequest(Action.ALLOW, pending_id=item.id, target=Target.HOST,
                                 lifetime="always"))  # fmt: skip
    assert await verdict is True
    [rule] = RuleStore(tmp_path / "rules.db").list()
    assert (rule.host, rule.cidr) == (None, f"{ATTACKER}/32")
    [line] = logged
    assert line["dst"] == ATTACKER and "names" not in line
    assert "claimed SNI pypi.test, unverified" in line["reason"]


async def test_an_sni_the_name_table_maps_to_the_address_is_verified(tmp_path: Path) -> None:
    addon, logged, looked_up = setup(tmp_path, Mode.ASK, [])
    addon.gate.names.add(ATTACKER, "api.example.test", 60)  # from a real DNS answer
    verdict = asyncio.create_task(addon.connection(deferred_ctx(addon), "api.example.test"))
    await asyncio.sleep(0)
    assert addon.gate.asker is not None
    [item] = addon.gate.asker.pending()
    assert item.names == ["api.example.test"] and item.claimed == ""
    addon.gate.asker.decide(DecisionRequest(Action.DENY, pending_id=item.id))
    assert await verdict is False and looked_up == []


async def test_enforce_checks_an_allowed_name_by_resolving_it(tmp_path: Path) -> None:
    addon, logged, looked_up = setup(
        tmp_path,
        Mode.ENFORCE,
        [
            Rule(Action.ALLOW, host="api.example.test", port_lo=443, port_hi=443, proto=Proto.TCP)
        ],  # fmt: skip
    )
    assert await addon.connection(deferred_ctx(addon), "api.example.test") is False
    assert looked_up == ["api.example.test"]  # allowed, so it may be looked up
    assert logged[-1]["verdict"] == "deny" and "names" not in logged[-1]
    assert "claimed SNI api.example.test, unverified" in logged[-1]["reason"]
    # The same name at the address it resolves to is allowed.
    assert await addon.connection(deferred_ctx(addon, "10.1.1.1"), "api.example.test") is True
    assert logged[-1]["names"] == ["api.example.test"]


async def test_an_undecided_name_is_never_looked_up_to_check_it(tmp_path: Path) -> None:
    addon, logged, looked_up = setup(tmp_path, Mode.ENFORCE, [])
    assert await addon.connection(deferred_ctx(addon), "secret-data.exfil.test") is False
    assert looked_up == []
    assert "claimed SNI secret-data.exfil.test" in logged[-1]["reason"]


async def test_a_deny_rule_naming_the_sni_refuses_it_anywhere(tmp_path: Path) -> None:
    addon, logged, _ = setup(tmp_path, Mode.ENFORCE, [
        Rule(Action.ALLOW, cidr=f"{ATTACKER}/32"), Rule(Action.DENY, host="evil.example.test")
    ])  # fmt: skip
    assert await addon.connection(deferred_ctx(addon), "evil.example.test") is False
    assert logged[-1]["verdict"] == "deny" and "deny evil.example.test" in logged[-1]["reason"]
    assert await addon.connection(deferred_ctx(addon), "fine.example.test") is True


async def test_a_bare_address_judged_by_its_sni_is_judged_with_its_program(
    tmp_path: Path,
) -> None:
    import time

    from snitch.core.process import ProcessInfo
    from snitch.gateway.attribution import Attributor

    rule = Rule(Action.ALLOW, host="api.example.test", exe="/usr/bin/curl")
    addon, logged, _ = setup(tmp_path, Mode.ENFORCE, [rule])
    addon.gate.attributor = Attributor(tmp_path / "none.sock", deadline=0.05)
    addon.gate.names.add("10.1.1.1", "api.example.test", 60)
    answers = addon.gate.attributor._answers  # noqa: SLF001 - what the service said
    for exe in ("/usr/bin/curl", "/usr/bin/python3.13"):
        key = deferred_ctx(addon, "10.1.1.1")
        fut = asyncio.get_running_loop().create_future()
        fut.set_result(ProcessInfo(7, 1000, exe))
        answers[key] = (time.monotonic(), fut)
        allowed = await addon.connection(key, "api.example.test")
        assert allowed is (exe == "/usr/bin/curl"), exe


def test_a_held_connection_allowed_to_be_read_in_passing_goes_on() -> None:
    """The flow gate marks an allowed web flow PEEK_MARK (peek on); a connection held in
    mitmproxy at its ClientHello stands in as a FutureVerdict: only DENY_MARK is a no."""
    from snitch.gateway.netfilter import DENY_MARK, PEEK_MARK
    from snitch.gateway.proxyjudge import FutureVerdict

    async def verdict(mark: int | None) -> bool:
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        held = FutureVerdict(future)
        if mark is not None:
            held.set_mark(mark)
        held.accept()
        return await future

    assert asyncio.run(verdict(None)) is True
    assert asyncio.run(verdict(PEEK_MARK)) is True
    assert asyncio.run(verdict(DENY_MARK)) is False
