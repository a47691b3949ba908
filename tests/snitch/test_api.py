"""The control API over a real unix socket: auth, decisions, the event stream."""

from __future__ import annotations

import asyncio
import json
import stat
from pathlib import Path
from typing import Any

import pytest

from snitch.core.model import Action, Decision, DecisionRequest, FlowKey, Mode, Proto, Rule
from snitch.gateway.api import ControlApi
from snitch.gateway.asker import Asker
from snitch.gateway.events import EventBus
from snitch.gateway.rulebook import RuleBook
from snitch.review.client import ApiError, GatewayClient

TOKEN = "s3cret-token"


class Packet:
    """A held packet: records its verdict."""

    def __init__(self) -> None:
        self.verdict = ""
        self.mark = 0

    def get_payload(self) -> bytes:
        return b""

    def retain(self) -> None:
        pass

    def set_mark(self, mark: int) -> None:
        self.mark = mark

    def accept(self) -> None:
        self.verdict = "deny" if self.mark else "allow"

    def drop(self) -> None:
        self.verdict = "drop"


class Gateway:
    def __init__(self, tmp: Path) -> None:
        self.bus = EventBus()
        self.rules = RuleBook(tmp / "rules.db", [], Mode.ASK, "sess1")
        self.finished: list[tuple[FlowKey, Decision]] = []
        self.sport = 40000
        self.asker = Asker(self.rules, self.bus, "sess1", self.finish, timeout=30)
        self.socket = tmp / "api.sock"
        self.api = ControlApi(self.socket, TOKEN, self.bus, self.rules, self.asker,
                              lambda: {"session": "sess1", "mode": "ask"})  # fmt: skip

    def finish(self, pkt: Any, key: FlowKey, decision: Decision, verdict: str,
               names: tuple[str, ...]) -> None:  # fmt: skip
        (pkt.accept() if decision.action is Action.ALLOW else (pkt.set_mark(1), pkt.accept()))
        self.finished.append((key, decision))

    def hold(self, dport: int, name: str) -> Packet:
        pkt = Packet()
        self.sport += 1
        key = FlowKey(Proto.TCP, "10.0.0.2", self.sport, "198.18.0.1", dport)
        self.asker.hold(pkt, key, (name,))  # type: ignore[arg-type]
        return pkt


async def raw_request(sock: Path, head: str) -> tuple[int, dict[str, Any]]:
    reader, writer = await asyncio.open_unix_connection(str(sock))
    writer.write(head.encode())
    await writer.drain()
    data = await reader.read()
    writer.close()
    status = int(data.split(b" ", 2)[1])
    return status, json.loads(data.split(b"\r\n\r\n", 1)[1] or b"null")


async def test_requests_without_the_right_token_are_rejected(tmp_path: Path) -> None:
    gw = Gateway(tmp_path)
    await gw.api.start()
    try:
        assert stat.S_IMODE(gw.socket.stat().st_mode) == 0o600
        status, body = await raw_request(gw.socket, "GET /v1/info HTTP/1.1\r\n\r\n")
        assert status == 401 and "token" in body["error"]
        with pytest.raises(ApiError) as wrong:
            await GatewayClient(gw.socket, "not-the-token").info()
        assert wrong.value.status == 401
        assert (await GatewayClient(gw.socket, TOKEN).info())["session"] == "sess1"
    finally:
        gw.api.close()


async def test_decisions_first_wins_and_events_are_streamed(tmp_path: Path) -> None:
    gw = Gateway(tmp_path)
    await gw.api.start()
    client = GatewayClient(gw.socket, TOKEN)
    seen: list[tuple[str, dict[str, Any]]] = []

    async def listen() -> None:
        async for event in client.events():
            seen.append((event.topic, event.data))

    listener = asyncio.create_task(listen())
    try:
        while not seen:  # the stream opens with the session's info
            await asyncio.sleep(0.01)
        api_pkt = gw.hold(443, "api.example.test")
        other_pkt = gw.hold(443, "cdn.example.test")
        items = await client.pending()
        assert [p.names for p in items] == [["api.example.test"], ["cdn.example.test"]]
        result = await client.decide(DecisionRequest(Action.ALLOW, pending_id=items[0].id))
        assert result == {"decided": [items[0].id], "rule": None}
        assert api_pkt.verdict == "allow" and other_pkt.verdict == ""
        with pytest.raises(ApiError) as late:  # a second dashboard, too late
            await client.decide(DecisionRequest(Action.DENY, pending_id=items[0].id))
        assert late.value.status == 409
        # A lasting decision by pattern releases every matching item and makes a rule.
        result = await client.decide(DecisionRequest(Action.DENY, pattern="*.example.test",
                                                     lifetime="always"))  # fmt: skip
        assert result["decided"] == [items[1].id] and other_pkt.verdict == "deny"
        assert [(r.action, r.host) for r in await client.rules()] == [("deny", "*.example.test")]
        deadline = asyncio.get_running_loop().time() + 5
        while len([t for t, _ in seen if t == "decided"]) < 2:
            assert asyncio.get_running_loop().time() < deadline, seen
            await asyncio.sleep(0.01)
        topics = [t for t, _ in seen]
        assert topics[0] == "session" and topics.count("pending") == 2
    finally:
        listener.cancel()
        gw.api.close()


async def test_rules_through_the_api_release_held_flows(tmp_path: Path) -> None:
    gw = Gateway(tmp_path)
    await gw.api.start()
    client = GatewayClient(gw.socket, TOKEN)
    try:
        pkt = gw.hold(80, "api.example.test")
        rule = await client.add_rule(Rule(Action.ALLOW, host="api.example.test"))
        assert rule.id is not None and pkt.verdict == "allow"
        explained = await client.explain("api.example.test", 80)
        assert explained["decision"]["action"] == "allow"
        await client.set_rule_enabled(rule.id, False)
        assert not (await client.rules())[0].enabled
        await client.remove_rule(rule.id)
        assert await client.rules() == []
        with pytest.raises(ApiError) as missing:
            await client.remove_rule(rule.id)
        assert missing.value.status == 404
    finally:
        gw.api.close()
