"""The decision service over real TLS on loopback: token, TLS only, asks and decisions."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from snitch.core.apitypes import SessionInfo
from snitch.core.fleetclient import ServiceClient, ServiceError, parse_url
from snitch.core.fleetwire import FleetAnswer, session_path
from snitch.core.grammar import Origin
from snitch.core.model import Action, DecisionRequest, Rule
from tests.fakes import pending
from tests.hostfakes import FleetService


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[FleetService]:
    running = await FleetService(tmp_path).start()
    yield running
    await running.close()


async def join(client: ServiceClient, session: str, *labels: str) -> None:
    info = SessionInfo(session, "ask", image="python", labels=labels)
    await client.request("PUT", session_path(session), info.to_dict())


async def ask(client: ServiceClient, session: str, item_id: str, name: str) -> FleetAnswer:
    item = pending(item_id, name, session=session)
    item.deadline = 0.0
    body = await client.request("POST", session_path(session, "ask"), item.to_dict(), timeout=None)
    return FleetAnswer.from_dict(body)


async def until(condition: object, what: str, deadline: float = 5.0) -> None:
    async with asyncio.timeout(deadline):
        while not condition():  # type: ignore[operator]
            await asyncio.sleep(0.01)


async def test_every_request_needs_the_token(service: FleetService) -> None:
    for token in ("", "fleet-token-" + "y" * 20):
        client = ServiceClient(service.url, token or "-", service.cert.read_text())
        with pytest.raises(ServiceError) as refused:
            await client.request("GET", "/sessions")
        assert refused.value.status == 401
        client.close()
    client = service.client()
    assert await client.request("GET", "/sessions") == []
    client.close()


async def test_plain_http_gets_no_answer(service: FleetService) -> None:
    host, port = parse_url(service.url)
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(b"GET /v1/sessions HTTP/1.1\r\nAuthorization: Bearer "
                 + service.token.encode() + b"\r\n\r\n")  # fmt: skip
    await writer.drain()
    try:
        answer = await asyncio.wait_for(reader.read(4096), 5)
    except ConnectionError:
        answer = b""
    writer.close()
    assert not answer.startswith(b"HTTP/")
    with pytest.raises(ValueError, match="https:// only"):
        parse_url(service.url.replace("https", "http"))


async def test_a_certificate_that_is_not_the_service_s_is_refused(
    service: FleetService, tmp_path: Path
) -> None:
    from snitch.fleet.tls import ensure_certificate

    other, _ = ensure_certificate(tmp_path / "other", ["127.0.0.1"])
    client = ServiceClient(service.url, service.token, other.read_text())
    with pytest.raises(ServiceError) as refused:
        await client.request("GET", "/sessions")
    assert refused.value.unreachable
    assert isinstance(refused.value.__cause__, ssl.SSLError | OSError)


async def test_the_service_s_rules_answer_at_once(service: FleetService) -> None:
    rule = service.fleet.rules.add(Rule(Action.ALLOW, host="api.example.test")).id
    client = service.client()
    await join(client, "s1")
    answer = await ask(client, "s1", "s1-1", "api.example.test")
    assert answer.decision.action is Action.ALLOW and answer.decision.rule_id == rule
    assert answer.rule is not None and answer.rule.host == "api.example.test"
    client.close()


async def test_an_undecided_item_waits_for_a_person(service: FleetService) -> None:
    gateway, dashboard = service.client(), service.client()
    await join(gateway, "s1")
    asking = asyncio.create_task(ask(gateway, "s1", "s1-1", "cdn.example.test"))
    await until(lambda: service.fleet.pending("s1"), "pending")
    assert not asking.done()
    shown = await dashboard.request("GET", session_path("s1", "pending"))
    assert [d["id"] for d in shown] == ["s1-1"]
    request = DecisionRequest(Action.DENY, "s1-1")
    result = await dashboard.request("POST", session_path("s1", "decide"), request.to_dict())
    assert result["decided"] == ["s1-1"] and result["rule"] is None
    answer = await asking
    assert answer.decision.action is Action.DENY and answer.decision.origin is Origin.PERSON
    with pytest.raises(ServiceError) as again:  # first decision wins
        await dashboard.request("POST", session_path("s1", "decide"), request.to_dict())
    assert again.value.status == 409
    gateway.close()
    dashboard.close()


async def test_a_lasting_decision_answers_the_whole_fleet(service: FleetService) -> None:
    one, two, dashboard = service.client(), service.client(), service.client()
    await join(one, "s1")
    await join(two, "s2")
    first = asyncio.create_task(ask(one, "s1", "s1-1", "pkg.example.test"))
    second = asyncio.create_task(ask(two, "s2", "s2-1", "pkg.example.test"))
    await until(lambda: service.fleet.pending("s1") and service.fleet.pending("s2"), "both")
    request = DecisionRequest(Action.ALLOW, "s1-1", lifetime="always")
    result = await dashboard.request("POST", session_path("s1", "decide"), request.to_dict())
    assert sorted(result["decided"]) == ["s1-1", "s2-1"]
    for answer in await asyncio.gather(first, second):
        assert answer.decision.action is Action.ALLOW
        assert answer.rule is not None and answer.rule.host == "pkg.example.test"
    assert [r.host for r in service.store.list()] == ["pkg.example.test"]
    for client in (one, two, dashboard):
        client.close()


async def test_a_gateway_that_hangs_up_withdraws_its_item(service: FleetService) -> None:
    gateway, dashboard = service.client(), service.client()
    await join(gateway, "s1")
    events = dashboard.stream(session_path("s1", "events"))
    first = await anext(events)
    assert first["topic"] == "session" and first["data"]["session"] == "s1"
    asking = asyncio.create_task(ask(gateway, "s1", "s1-1", "cdn.example.test"))
    assert (await anext(events))["topic"] == "pending"
    asking.cancel()
    withdrawn = await anext(events)
    assert withdrawn["topic"] == "expired" and withdrawn["data"]["id"] == "s1-1"
    assert service.fleet.pending("s1") == []
    await events.aclose()
    gateway.close()


async def test_sessions_list_their_labels(service: FleetService) -> None:
    client = service.client()
    await join(client, "s1", "team=web", "env=ci")
    listed = await client.request("GET", "/sessions")
    assert [SessionInfo.from_dict(d).labels for d in listed] == [("team=web", "env=ci")]
    with pytest.raises(ServiceError) as unknown:
        await client.request("GET", session_path("nope", "pending"))
    assert unknown.value.status == 404
    forged = SessionInfo("s2", "ask", labels=("team=web\x1b]0;owned\x07",)).to_dict()
    with pytest.raises(ServiceError) as refused:
        await client.request("PUT", session_path("s2"), forged)
    assert refused.value.status == 400 and "s2" not in service.fleet.members
    client.close()


async def test_a_label_scoped_rule_decides_only_for_sessions_with_that_label(
    service: FleetService,
) -> None:
    service.fleet.rules.add(Rule(Action.ALLOW, host="ci.example.test", scope="label:team=web"))
    web, other = service.client(), service.client()
    await join(web, "s1", "team=web")
    await join(other, "s2", "team=data")
    answer = await ask(web, "s1", "s1-1", "ci.example.test")
    assert answer.decision.action is Action.ALLOW
    assert answer.rule is not None and answer.rule.scope == "label:team=web"
    waiting = asyncio.create_task(ask(other, "s2", "s2-1", "ci.example.test"))
    await until(lambda: service.fleet.pending("s2"), "held for a person")
    assert not waiting.done()
    waiting.cancel()
    web.close()
    other.close()


async def test_a_dashboard_that_hangs_up_is_forgotten_at_once(service: FleetService) -> None:
    client = service.client()
    await join(client, "s1")
    events = client.stream(session_path("s1", "events"))
    assert (await anext(events))["topic"] == "session"
    assert len(service.fleet.members["s1"].streams) == 1
    await events.aclose()  # no event comes after: only the hang-up can tell
    await until(lambda: not service.fleet.members["s1"].streams, "stream freed")
    client.close()
