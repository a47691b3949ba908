"""Issue 12 through the control API: dry-run decisions, refusals, the ``prompts`` event."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from snitch.core.model import Action, DecisionRequest, PromptCounts, Target
from snitch.review.client import ApiError, GatewayClient
from tests.fakes import TOKEN, ApiGateway


async def test_a_dry_run_answers_what_would_be_stored_and_changes_nothing(
    tmp_path: Path,
) -> None:
    gw = ApiGateway(tmp_path)
    await gw.api.start()
    client = GatewayClient(gw.socket, TOKEN)
    try:
        pkt = gw.hold(443, "api.example.test")  # at 198.18.0.1, a synthetic address
        [item] = await client.pending()
        assert item.synthetic
        request = DecisionRequest(Action.ALLOW, pending_id=item.id, target=Target.IP,
                                  lifetime="always", dry_run=True)  # fmt: skip
        answer = await client.decide(request)
        assert answer.dry_run is True and answer.decided == (item.id,)
        assert answer.rule is not None
        assert answer.rule.host == "api.example.test" and answer.rule.cidr is None
        assert pkt.verdict == "" and await client.rules() == [] and len(await client.pending()) == 1
    finally:
        gw.api.close()


async def test_a_lasting_rule_for_a_nameless_synthetic_address_is_refused(tmp_path: Path) -> None:
    gw = ApiGateway(tmp_path)
    await gw.api.start()
    client = GatewayClient(gw.socket, TOKEN)
    try:
        gw.hold(80, "")  # no name: nothing but the synthetic address to store
        [item] = await client.pending()
        with pytest.raises(ApiError) as refused:
            await client.decide(DecisionRequest(Action.ALLOW, pending_id=item.id,
                                                lifetime="always"))  # fmt: skip
        assert refused.value.status == 409 and "198.18.0.0/15" in str(refused.value)
        assert await client.rules() == []
    finally:
        gw.api.close()


async def test_prompt_counts_are_streamed_when_they_change(tmp_path: Path) -> None:
    gw = ApiGateway(tmp_path)
    await gw.api.start()
    client = GatewayClient(gw.socket, TOKEN)
    seen: list[dict[str, Any]] = []

    async def listen() -> None:
        async for event in client.events():
            if event.topic == "prompts":
                seen.append(event.data)

    listener = asyncio.create_task(listen())
    try:
        await asyncio.sleep(0.1)  # the stream is open
        gw.hold(443, "api.example.test")
        gw.hold(443, "api.example.test")  # the same destination: collapsed
        gw.asker.publish_counts()  # the asker's tick does this every 0.2 s
        deadline = asyncio.get_running_loop().time() + 5
        while not seen:
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.01)
        counts = PromptCounts.from_dict(seen[-1])
        assert (counts.pending, counts.held, counts.collapsed) == (1, 2, 1)
    finally:
        listener.cancel()
        gw.api.close()
