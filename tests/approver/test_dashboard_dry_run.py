"""Issue 12, item 5: the dashboard shows what a lasting decision will store before it is
stored, by asking the gateway for a dry run (``DecisionRequest.dry_run``) through the
real control API: the answer is the rule, and nothing changes."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from typing import Any

import pytest

from snitch.core.model import Action, DecisionRequest, Target
from snitch.review.client import ApiError, GatewayClient
from tests.fakes import TOKEN, ApiGateway

pytestmark = pytest.mark.asyncio


async def test_a_dry_run_answers_the_rule_and_changes_nothing(tmp_path: Path) -> None:
    gw = ApiGateway(tmp_path)
    await gw.api.start()
    client = GatewayClient(gw.socket, TOKEN)
    seen: list[tuple[str, dict[str, Any]]] = []

    async def listen() -> None:
        async for event in client.events():
            seen.append((event.topic, event.data))

    listener = asyncio.create_task(listen())
    try:
        while not seen:
            await asyncio.sleep(0.01)
        pkt = gw.hold(443, "api.example.test")
        item = (await client.pending())[0]
        always = DecisionRequest(Action.ALLOW, pending_id=item.id, lifetime="always")
        preview = await client.decide(dataclasses.replace(always, dry_run=True))
        assert preview.decided == (item.id,) and preview.dry_run is True
        assert preview.rule is not None
        assert preview.rule.describe() == "allow api.example.test:443/tcp"
        # nothing happened: no rule, the flow still held, no decision announced
        assert await client.rules() == [] and pkt.verdict == ""
        assert [p.id for p in await client.pending()] == [item.id]
        by_ip = DecisionRequest(Action.DENY, pending_id=item.id, target=Target.CIDR,
                                lifetime="5m", cidr_prefix=24, dry_run=True)  # fmt: skip
        rule = (await client.decide(by_ip)).rule
        assert rule is not None
        # a synthetic address is never a rule's target: the name stands in for it
        assert (rule.cidr, rule.host, rule.expires_at is not None) == (
            None,
            "api.example.test",
            True,
        )
        once = await client.decide(DecisionRequest(Action.ALLOW, pending_id=item.id,
                                                   dry_run=True))  # fmt: skip
        assert once.to_dict() == {"rule": None, "decided": [item.id], "dry_run": True}
        batch = DecisionRequest(Action.DENY, pattern="*.Example.test", lifetime="session",
                                dry_run=True)  # fmt: skip
        pattern = await client.decide(batch)
        assert pattern.rule is not None and pattern.rule.host == "*.example.test"
        assert await client.rules() == [] and pkt.verdict == ""
        # the real decision stores what the dry run showed
        result = await client.decide(always)
        assert result.rule is not None
        assert result.rule.describe() == "allow api.example.test:443/tcp"
        assert pkt.verdict == "accepted"
        with pytest.raises(ApiError) as gone:  # a dry run on an item no longer held
            await client.decide(dataclasses.replace(always, dry_run=True))
        assert gone.value.status == 409
        await asyncio.sleep(0.05)
        assert [t for t, _ in seen].count("decided") == 1
    finally:
        listener.cancel()
        gw.api.close()
