"""Held opens of shared files at the gateway: ``POST /v1/files/ask`` holds until a person,
a rule or the deadline decides; lasting decisions store file rules."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from snitch.core.fileask import FileAsk, folder_glob, glob_escape
from snitch.core.grammar import Origin
from snitch.core.model import Action, DecisionRequest, PendingKind, Proto, Query, Rule, Target
from snitch.core.policy import Policy
from snitch.review.client import ApiError, GatewayClient
from tests.fakes import TOKEN, ApiGateway

CREDS = FileAsk(
    "~/.aws/credentials", "/home/coderun/.aws/credentials", "read", 7, "cat x", "/usr/bin/cat"
)


async def _started(tmp_path: Path) -> tuple[ApiGateway, GatewayClient]:
    gw = ApiGateway(tmp_path)
    await gw.api.start()
    return gw, GatewayClient(gw.socket, TOKEN)


async def _held(client: GatewayClient, count: int = 1) -> list[str]:
    for _ in range(200):
        items = await client.pending()
        if len(items) >= count:
            return [item.id for item in items]
        await asyncio.sleep(0.01)
    raise AssertionError("nothing was held")


async def test_an_open_is_held_until_a_person_allows_it_once(tmp_path: Path) -> None:
    gw, client = await _started(tmp_path)
    try:
        asked = asyncio.create_task(client.ask_file(CREDS))
        [item_id] = await _held(client)
        [item] = await client.pending()
        assert item.kind == PendingKind.FILE and item.path == "~/.aws/credentials"
        assert item.dst == "/home/coderun/.aws/credentials" and item.access == "read"
        assert item.pid == 7 and item.cmdline == "cat x" and item.label == "~/.aws/credentials"
        assert item.exe == "/usr/bin/cat"
        assert not asked.done()
        await client.decide(DecisionRequest(Action.ALLOW, pending_id=item_id))
        decision = await asyncio.wait_for(asked, 5)
        assert decision.action is Action.ALLOW and decision.origin is Origin.PERSON
        assert await client.rules() == [] and await client.pending() == []
    finally:
        gw.api.close()


async def test_always_stores_a_file_rule_for_the_folder_and_decides_a_second_open(
    tmp_path: Path,
) -> None:
    gw, client = await _started(tmp_path)
    try:
        first = asyncio.create_task(client.ask_file(CREDS))
        config = FileAsk("~/.aws/config", "/home/coderun/.aws/config", "read")
        second = asyncio.create_task(client.ask_file(config))
        ids = await _held(client, 2)
        request = DecisionRequest(Action.DENY, pending_id=ids[0], target=Target.DOMAIN,
                                  lifetime="always")  # fmt: skip
        result = await client.decide(request)
        assert result.rule is not None and result.rule.proto is Proto.FILE
        assert result.rule.file == "~/.aws/*" and result.rule.access == "read"
        assert sorted(result.decided) == sorted(ids)  # the rule decided both
        for task in (first, second):
            decision = await asyncio.wait_for(task, 5)
            assert decision.action is Action.DENY and decision.rule_id == result.rule.id
        # A third open is decided by the stored rule without being held.
        again = await asyncio.wait_for(client.ask_file(CREDS), 5)
        assert again.action is Action.DENY and again.origin is Origin.RULE
        write = FileAsk("~/.aws/credentials", "/x", "write")
        asked = asyncio.create_task(client.ask_file(write))  # another access: held again
        await _held(client)
        asked.cancel()
    finally:
        gw.api.close()


async def test_opens_of_one_file_join_one_item_and_the_deadline_denies(tmp_path: Path) -> None:
    gw, client = await _started(tmp_path)
    gw.asker.default = Action.ALLOW  # a file is never handed over by default anyway
    try:
        tasks = [asyncio.create_task(client.ask_file(CREDS)) for _ in range(3)]
        await _held(client)
        for _ in range(200):
            [item] = await client.pending()
            if item.flows == 3:
                break
            await asyncio.sleep(0.01)
        assert item.flows == 3
        gw.asker.held[item.id].item.deadline = 0
        assert gw.asker.expire() == [item.id]
        for task in tasks:
            decision = await asyncio.wait_for(task, 5)
            assert decision.action is Action.DENY and decision.origin is Origin.DEADLINE
    finally:
        gw.api.close()


async def test_a_session_decision_stores_a_session_rule(tmp_path: Path) -> None:
    gw, client = await _started(tmp_path)
    try:
        asked = asyncio.create_task(client.ask_file(CREDS))
        [item_id] = await _held(client)
        request = DecisionRequest(Action.ALLOW, pending_id=item_id, port="any",
                                  lifetime="session")  # fmt: skip
        result = await client.decide(request)
        assert result.rule is not None and result.rule.session == "sess1"
        assert result.rule.file == "~/.aws/credentials" and result.rule.access is None
        assert (await asyncio.wait_for(asked, 5)).action is Action.ALLOW
    finally:
        gw.api.close()


async def test_a_bad_ask_is_refused_and_holds_nothing(tmp_path: Path) -> None:
    gw, client = await _started(tmp_path)
    try:
        for body in ({"path": "", "access": "read"}, {"path": "~/x", "access": "exec"},
                     {"path": "~/x\0", "access": "read"}, {"path": "~/x", "access": "read",
                                                           "pid": "1"}, [1]):  # fmt: skip
            with pytest.raises(ApiError) as refused:
                await client.request("POST", "/files/ask", body)
            assert refused.value.status == 400
        assert await client.pending() == []
    finally:
        gw.api.close()


async def test_a_session_that_does_not_ask_says_so(tmp_path: Path) -> None:
    gw, client = await _started(tmp_path)
    gw.api.asker = None
    try:
        with pytest.raises(ApiError) as refused:
            await client.ask_file(CREDS)
        assert refused.value.status == 409
    finally:
        gw.api.close()


def test_a_file_named_like_a_glob_is_a_rule_for_that_file_only() -> None:
    assert glob_escape("~/share/*") == "~/share/[*]"
    assert folder_glob("~/a*b/c") == "~/a[*]b/*"
    assert folder_glob("/c") == "/*"
    rule = Rule(Action.ALLOW, proto=Proto.FILE, file=glob_escape("~/s/[x]?*"), id=1)
    policy = Policy([rule])
    assert policy.decide(Query(Proto.FILE, file="~/s/[x]?*", access="read")) is not None
    assert policy.decide(Query(Proto.FILE, file="~/s/xab", access="read")) is None
    assert policy.decide(Query(Proto.FILE, file="~/s/[x]?z", access="read")) is None


def test_the_rule_book_keeps_a_file_query_s_fields(tmp_path: Path) -> None:
    gw = ApiGateway(tmp_path)
    gw.rules.add_rule(Rule(Action.ALLOW, proto=Proto.FILE, file="~/.aws/*", access="read"))
    decision = gw.rules.decide(Query(Proto.FILE, file="~/.aws/config", access="read"))
    assert decision is not None and decision.action is Action.ALLOW
    assert gw.rules.decide(Query(Proto.FILE, file="~/.aws/config", access="write")) is None
