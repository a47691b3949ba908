"""The control API over a real unix socket: auth, decisions, the event stream."""

from __future__ import annotations

import asyncio
import json
import stat
from pathlib import Path
from typing import Any

import pytest

from snitch.core.model import Action, DecisionRequest, Proto, Rule
from snitch.review.client import ApiError, GatewayClient
from tests.fakes import TOKEN, ApiGateway


async def raw_request(sock: Path, head: str) -> tuple[int, dict[str, Any]]:
    reader, writer = await asyncio.open_unix_connection(str(sock))
    writer.write(head.encode())
    await writer.drain()
    data = await reader.read()
    writer.close()
    status = int(data.split(b" ", 2)[1])
    return status, json.loads(data.split(b"\r\n\r\n", 1)[1] or b"null")


async def test_requests_without_the_right_token_are_rejected(tmp_path: Path) -> None:
    gw = ApiGateway(tmp_path)
    await gw.api.start()
    try:
        assert stat.S_IMODE(gw.socket.stat().st_mode) == 0o600
        status, body = await raw_request(gw.socket, "GET /v1/info HTTP/1.1\r\n\r\n")
        assert status == 401 and "token" in body["error"]
        with pytest.raises(ApiError) as wrong:
            await GatewayClient(gw.socket, "not-the-token").info()
        assert wrong.value.status == 401
        assert (await GatewayClient(gw.socket, TOKEN).info()).session == "sess1"
    finally:
        gw.api.close()


async def test_decisions_first_wins_and_events_are_streamed(tmp_path: Path) -> None:
    gw = ApiGateway(tmp_path)
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
        once = DecisionRequest(Action.ALLOW, pending_id=items[0].id).to_dict()
        raw = await client.request("POST", "/decide", once)  # the JSON on the wire
        assert raw == {"decided": [items[0].id], "rule": None}
        assert api_pkt.verdict == "accepted" and other_pkt.verdict == ""
        with pytest.raises(ApiError) as late:  # a second dashboard, too late
            await client.decide(DecisionRequest(Action.DENY, pending_id=items[0].id))
        assert late.value.status == 409
        # A lasting decision by pattern releases every matching item and makes a rule.
        result = await client.decide(DecisionRequest(Action.DENY, pattern="*.example.test",
                                                     lifetime="always"))  # fmt: skip
        assert result.decided == (items[1].id,) and other_pkt.verdict == "refused"
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
    gw = ApiGateway(tmp_path)
    await gw.api.start()
    client = GatewayClient(gw.socket, TOKEN)
    try:
        pkt = gw.hold(80, "api.example.test")
        rule = await client.add_rule(Rule(Action.ALLOW, host="api.example.test"))
        assert rule.id is not None and pkt.verdict == "accepted"
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


async def test_explain_a_file_through_the_api(tmp_path: Path) -> None:
    gw = ApiGateway(tmp_path)
    await gw.api.start()
    client = GatewayClient(gw.socket, TOKEN)
    try:
        await client.add_rule(Rule(Action.ALLOW, proto=Proto.FILE, file="~/.aws/*", access="read"))
        await client.add_rule(Rule(Action.ALLOW, host="api.example.test"))  # never a file's
        explained = await client.explain("~/.aws/config", 0, "file")
        assert explained["query"]["file"] == "~/.aws/config"
        assert explained["query"]["access"] == "read"
        assert explained["decision"]["reason"] == "allow-file ~/.aws/* (read)"
        assert [m["describe"] for m in explained["matches"]] == ["allow-file ~/.aws/* (read)"]
        with pytest.raises(ApiError) as bad:
            await client.explain("relative/.env", 0, "file")
        assert bad.value.status == 400
    finally:
        gw.api.close()
