"""The flow gate with process attribution: exe rules wait (briefly) for the process, log
lines carry it, a held item gets it as an update; an unknown process never matches."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from snitch.core.model import Action, FlowKey, Mode, Proto, Rule
from snitch.core.process import ProcessInfo
from snitch.gateway.attribution import Attributor
from tests.fakes import SANDBOX, Packet, gate, tcp

CURL = ProcessInfo(7, 1000, "/usr/bin/curl", "curl http://api.example.test/", ("/usr/bin/dash",))
PYTHON = ProcessInfo(8, 1000, "/usr/bin/python3.13", "python3 get.py", ("/usr/bin/dash",))


def answer(
    attributor: Attributor, sport: int, found: ProcessInfo | None = None
) -> asyncio.Future[ProcessInfo | None]:
    """What the service will say (now, with ``found``, or later: set the future)."""
    key = FlowKey(Proto.TCP, SANDBOX, sport, "10.9.0.5", 80)
    fut: asyncio.Future[ProcessInfo | None] = asyncio.get_running_loop().create_future()
    if found is not None:
        fut.set_result(found)
    attributor._answers[key] = (time.monotonic(), fut)  # noqa: SLF001 - the service's answer
    return fut


async def settled(*packets: Packet) -> None:
    for pkt in packets:
        await asyncio.wait_for(pkt.settled.wait(), 5)


def test_an_exe_rule_allows_only_its_program_and_an_unknown_one_never_matches(
    tmp_path: Path,
) -> None:
    async def run() -> None:
        rule = Rule(Action.ALLOW, cidr="10.9.0.0/16", exe="/usr/bin/curl")
        g, logged = gate(tmp_path, Mode.ENFORCE, [rule])
        g.attributor = Attributor(tmp_path / "none.sock", deadline=0.05)
        answer(g.attributor, 1, CURL)
        answer(g.attributor, 2, PYTHON)
        late = answer(g.attributor, 3)  # answered after the deadline
        pkts = [Packet(tcp("10.9.0.5", 80, sport=p)) for p in (1, 2, 3, 4)]  # 4: no service
        for pkt in pkts:
            g.on_packet(pkt)
        await settled(*pkts)
        late.set_result(CURL)
        assert [p.verdict for p in pkts] == ["accepted", "refused", "refused", "refused"]
        assert all("retain" in p.verdicts for p in pkts)  # held past the callback
        await asyncio.sleep(0.05)
        by_port = {e["sport"]: e for e in logged}
        assert by_port[1]["exe"] == "/usr/bin/curl" and by_port[1]["parents"] == ["/usr/bin/dash"]
        assert by_port[1]["rule"].endswith("exe=/usr/bin/curl")
        assert by_port[2]["exe"] == "/usr/bin/python3.13" and by_port[2]["pid"] == 8
        assert by_port[3]["exe"] == "/usr/bin/curl"  # logged with it, decided without it
        assert "exe" not in by_port[4] and "pid" not in by_port[4]

    asyncio.run(run())


def test_without_exe_rules_the_verdict_never_waits_and_the_log_line_does(tmp_path: Path) -> None:
    async def run() -> None:
        g, logged = gate(tmp_path, Mode.ENFORCE, [Rule(Action.ALLOW, cidr="10.9.0.0/16")])
        g.attributor = Attributor(tmp_path / "none.sock")
        fut = answer(g.attributor, 1)
        answer(g.attributor, 2)  # never answered: published by close()
        first, second = Packet(tcp("10.9.0.5", 80, sport=1)), Packet(tcp("10.9.0.5", 80, sport=2))
        g.on_packet(first)
        g.on_packet(second)
        assert (first.verdict, second.verdict) == ("accepted", "accepted")  # at once
        assert logged == []  # the lines wait for their process
        fut.set_result(CURL)
        await asyncio.sleep(0.01)
        assert [(e["sport"], e.get("exe")) for e in logged] == [(1, "/usr/bin/curl")]
        g.attributor.close()
        assert [(e["sport"], e.get("exe")) for e in logged] == [(1, "/usr/bin/curl"), (2, None)]

    asyncio.run(run())


def test_a_held_item_gets_its_process_as_an_update(tmp_path: Path) -> None:
    async def run() -> None:
        g, logged = gate(tmp_path, Mode.ASK, [])
        g.attributor = Attributor(tmp_path / "none.sock")
        fut = answer(g.attributor, 1)
        g.on_packet(Packet(tcp("10.9.0.5", 80, sport=1)))
        assert g.asker is not None
        [item] = g.asker.pending()
        assert item.pid == 0 and item.exe == ""
        fut.set_result(CURL)
        await asyncio.sleep(0)
        [item] = g.asker.pending()
        assert (item.pid, item.exe, item.parents) == (7, "/usr/bin/curl", ["/usr/bin/dash"])
        updates = [d for t, d in logged.events if t == "pending" and d["id"] == item.id]
        assert [u["exe"] for u in updates] == ["", "/usr/bin/curl"]

    asyncio.run(run())


def test_another_programs_connection_is_asked_about_on_its_own(tmp_path: Path) -> None:
    async def run() -> None:
        g, _ = gate(tmp_path, Mode.ASK, [])
        g.attributor = Attributor(tmp_path / "none.sock")
        first, second, third = (
            answer(g.attributor, 1),
            answer(g.attributor, 2),
            answer(g.attributor, 3),
        )
        pkts = [Packet(tcp("10.9.0.5", 80, sport=p)) for p in (1, 2, 3)]
        for pkt in pkts:
            g.on_packet(pkt)
        assert g.asker is not None
        [item] = g.asker.pending()
        assert item.flows == 3  # joined: their programs are not known yet
        first.set_result(CURL)
        second.set_result(PYTHON)
        third.set_result(CURL)
        await asyncio.sleep(0)
        items = {i.exe: i for i in g.asker.pending()}
        assert sorted(items) == ["/usr/bin/curl", "/usr/bin/python3.13"]
        assert items["/usr/bin/curl"].flows == 2 and items["/usr/bin/python3.13"].flows == 1
        assert items["/usr/bin/python3.13"].sport == 2
        # allowing curl's item releases curl's connections only
        from snitch.core.model import DecisionRequest

        g.asker.decide(DecisionRequest(Action.ALLOW, pending_id=items["/usr/bin/curl"].id))
        assert [p.verdict for p in pkts] == ["accepted", "", "accepted"]

    asyncio.run(run())
