"""A gateway's asker linked to a real decision service: asked, answered, fail closed."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from snitch.core.apitypes import SessionInfo
from snitch.core.fleetwire import REACHABLE, UNREACHABLE, session_path
from snitch.core.model import Action, DecisionRequest, Mode, Rule
from snitch.gateway.asker import Asker
from snitch.gateway.fleetlink import FleetLink, LazyClient
from tests.fakes import LogCollector, Packet
from tests.hostfakes import FleetService

SESSION = "sess1"


class LinkedGateway:
    """The asker of one session, with its rule book, linked to ``service``."""

    def __init__(self, tmp: Path, service: FleetService, *labels: str) -> None:
        from snitch.gateway.events import EventBus
        from snitch.gateway.rulebook import RuleBook
        from tests.fakes import ApiGateway

        self.bus = EventBus()
        self.rules = RuleBook(tmp / "local-rules.db", [], Mode.ASK, SESSION)
        self.rules.labels = labels
        self.log = LogCollector(self.bus)
        self.finished: list[str] = []
        self.asker = Asker(self.rules, self.bus, SESSION, self._finish, timeout=30)
        credentials = tmp / "decision.json"
        credentials.write_text(json.dumps({"token": service.token,
                                           "ca": service.cert.read_text()}))  # fmt: skip
        info = SessionInfo(SESSION, "ask", labels=labels)
        self.link = FleetLink(LazyClient(service.url, credentials), SESSION, self.asker,
                              self.rules, self.bus, lambda: info)  # fmt: skip
        self.sport = 40000
        self._helper = ApiGateway  # the same packet shape as the API tests

    def _finish(self, pkt: Packet, key: object, decision: object, verdict: str,
                names: tuple[str, ...]) -> None:  # fmt: skip
        from snitch.core.model import Decision
        from snitch.gateway.netfilter import DENY_MARK

        assert isinstance(decision, Decision)
        if decision.action is not Action.ALLOW:
            pkt.set_mark(DENY_MARK)
        pkt.accept()
        self.finished.append(decision.reason)

    def hold(self, name: str, dport: int = 443) -> Packet:
        from snitch.core.model import FlowKey, Proto

        pkt = Packet()
        self.sport += 1
        key = FlowKey(Proto.TCP, "10.0.0.2", self.sport, "203.0.113.7", dport)
        self.asker.hold(pkt, key, (name,))
        return pkt


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[FleetService]:
    running = await FleetService(tmp_path).start()
    yield running
    await running.close()


async def settled(pkt: Packet, deadline: float = 10.0) -> str:
    await asyncio.wait_for(pkt.settled.wait(), deadline)
    return pkt.verdict


async def until(condition: object, deadline: float = 10.0) -> None:
    async with asyncio.timeout(deadline):
        while not condition():  # type: ignore[operator]
            await asyncio.sleep(0.01)


async def test_a_held_flow_is_decided_on_the_fleet_dashboard(
    service: FleetService, tmp_path: Path
) -> None:
    gateway = LinkedGateway(tmp_path, service, "team=web")
    pkt = gateway.hold("pkg.example.test")
    await until(lambda: SESSION in service.fleet.members and service.fleet.pending(SESSION))
    assert service.fleet.members[SESSION].info.labels == ("team=web",)
    dashboard = service.client()
    request = DecisionRequest(Action.ALLOW, f"{SESSION[:6]}-1", lifetime="always")
    await dashboard.request("POST", session_path(SESSION, "decide"), request.to_dict())
    assert await settled(pkt) == "accepted"
    assert gateway.finished[-1].startswith("decision service: ")
    # the lasting rule is kept for this session: the next flow there needs no question
    again = gateway.hold("pkg.example.test")
    assert await settled(again, 1.0) == "accepted"
    assert service.fleet.pending(SESSION) == []
    dashboard.close()
    await gateway.link.close()


async def test_a_local_decision_withdraws_the_question(
    service: FleetService, tmp_path: Path
) -> None:
    gateway = LinkedGateway(tmp_path, service)
    pkt = gateway.hold("cdn.example.test")
    await until(lambda: SESSION in service.fleet.members and service.fleet.pending(SESSION))
    gateway.asker.decide(DecisionRequest(Action.DENY, f"{SESSION[:6]}-1"), by="api")
    assert await settled(pkt) == "refused"
    await until(lambda: service.fleet.pending(SESSION) == [])
    await gateway.link.close()


async def test_without_the_service_undecided_flows_are_denied_and_logged_once(
    service: FleetService, tmp_path: Path
) -> None:
    gateway = LinkedGateway(tmp_path, service)
    gateway.rules.learn(Rule(Action.ALLOW, host="allowed.example.test", session=SESSION))
    gateway.link.start()
    first = gateway.hold("one.example.test")
    await until(lambda: SESSION in service.fleet.members and service.fleet.pending(SESSION))
    await service.close()  # the service stops: its questions end unanswered
    assert await settled(first) == "refused"
    second = gateway.hold("two.example.test")
    assert await settled(second) == "refused"
    assert all(UNREACHABLE in why for why in gateway.finished)
    said = [e["message"] for e in gateway.log if e.get("kind") == "event"]
    assert len([m for m in said if m.startswith(UNREACHABLE)]) == 1, said
    # what the session's own rules allow goes on working (the flow gate asks them first)
    from snitch.core.model import Proto

    allowed = gateway.rules.decide(gateway.rules.for_flow(Proto.TCP, "203.0.113.7", 443,
                                                          ("allowed.example.test",)))  # fmt: skip
    assert allowed is not None and allowed.action is Action.ALLOW
    assert REACHABLE not in said
    await gateway.link.close()


async def test_the_log_reaches_the_service_and_an_outage_is_said_to_end(
    service: FleetService, tmp_path: Path
) -> None:
    from snitch.fleet.server import FleetServer
    from snitch.fleet.tls import server_context

    gateway = LinkedGateway(tmp_path, service, "team=web")
    gateway.link.start()
    first = gateway.hold("one.example.test")
    await until(lambda: SESSION in service.fleet.members and service.fleet.pending(SESSION))
    gateway.asker.decide(DecisionRequest(Action.ALLOW, f"{SESSION[:6]}-1"), by="api")
    assert await settled(first) == "accepted"
    from snitch.core.logentry import EntryKind, LogEntry

    gateway.bus.log(LogEntry(EntryKind.FLOW, session=SESSION, dst="203.0.113.7", verdict="allow"))
    await until(lambda: any(line.get("kind") == "flow"
                            for line in service.fleet.members[SESSION].log))  # fmt: skip
    port = int(service.url.rsplit(":", 1)[1])
    await service.server.close()  # an outage...
    denied = gateway.hold("two.example.test")
    assert await settled(denied) == "refused"
    context = server_context(service.cert, service.cert.with_name("key.pem"))
    again = FleetServer(service.fleet, service.token, context)
    await again.start("127.0.0.1", port)  # ...that ends
    try:
        said = lambda: [e["message"] for e in gateway.log if e.get("kind") == "event"]  # noqa: E731
        await until(lambda: REACHABLE in said())
        assert [m.split(":")[0] for m in said()] == [UNREACHABLE, REACHABLE]
    finally:
        await gateway.link.close()
        await again.close()
