"""Every open of a share is a decision, on a real FUSE mount without Docker: the test
process opens the files, the share's daemon decides by file rules and the mode, and in
ask mode holds the open until a decision comes through a real control API."""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from sandbox.shares.mounts import Deciding, SessionShares, start_shares
from sandbox.shares.spec import parse_share
from snitch.core.model import Action, DecisionRequest, PendingKind, Proto, Rule, Target
from snitch.core.store import RuleStore
from snitch.review.client import GatewayClient
from tests.fakes import TOKEN, ApiGateway
from tests.needs import need_root, need_tool


@pytest.fixture()
def data(tmp_path: Path) -> Path:
    need_tool("fusermount3", "--share mounts")
    need_root("a FUSE mount with allow_other")
    folder = tmp_path / "home" / "data"
    folder.mkdir(parents=True)
    (folder / "a.txt").write_text("alpha")
    (folder / "b.txt").write_text("beta")
    (tmp_path / "session").mkdir()
    return folder


def _mount(tmp_path: Path, data: Path, **deciding: Any) -> SessionShares:
    base = Deciding(home=str(tmp_path / "home"), rules=tmp_path / "rules.db", **deciding)
    return start_shares([parse_share(f"{data}:/d")], tmp_path / "session", "sess1", 1 << 20,
                        base)  # fmt: skip


def _log(tmp_path: Path) -> list[dict[str, Any]]:
    path = tmp_path / "session" / "files.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _opens(tmp_path: Path) -> list[dict[str, Any]]:
    return [line for line in _log(tmp_path) if line.get("method") != "close"]


def test_enforce_opens_what_a_rule_allows_and_refuses_the_rest(tmp_path: Path, data: Path) -> None:
    with RuleStore(tmp_path / "rules.db") as store:
        rule_id = store.add(Rule(Action.ALLOW, proto=Proto.FILE, file="~/data/a.txt",
                                 access="read"))  # fmt: skip
    shares = _mount(tmp_path, data, mode="enforce")
    mount = shares.mounted[0].mount
    try:
        assert (mount / "a.txt").read_text() == "alpha"
        with pytest.raises(PermissionError):
            (mount / "b.txt").read_text()
        assert sorted(p.name for p in mount.iterdir()) == ["a.txt", "b.txt"]  # listing works
        # A rule change takes effect at the next open.
        with RuleStore(tmp_path / "rules.db") as store:
            store.add(Rule(Action.DENY, proto=Proto.FILE, file="~/data/a.txt", priority=1))
        with pytest.raises(PermissionError):
            (mount / "a.txt").read_text()
    finally:
        shares.stop()
    first, second, third = _opens(tmp_path)
    assert first["path"] == "~/data/a.txt" and first["names"] == ["/d/a.txt"]
    assert first["verdict"] == "allow" and first["rule_id"] == rule_id
    assert first["access"] == "read" and first["origin"] == "rule" and first["pid"] > 0
    assert "allow-file ~/data/a.txt" in first["rule"]
    assert second["verdict"] == "deny" and second["reason"] == "no rule matched"
    assert second["origin"] == "default" and second["path"] == "~/data/b.txt"
    assert third["verdict"] == "deny" and third["rule_id"] != rule_id
    closes = [line for line in _log(tmp_path) if line.get("method") == "close"]
    assert closes[0]["bytes_in"] == len("alpha") and closes[0]["path"] == "~/data/a.txt"


def test_audit_opens_everything_and_says_what_enforce_would_have_done(
    tmp_path: Path, data: Path
) -> None:
    shares = _mount(tmp_path, data, mode="audit")
    try:
        assert (shares.mounted[0].mount / "b.txt").read_text() == "beta"
    finally:
        shares.stop()
    [line] = _opens(tmp_path)
    assert line["verdict"] == "allow" and line["origin"] == "audit"
    assert line["reason"] == "audit (enforce would deny)"


def test_ask_mode_without_a_gateway_refuses_at_once(tmp_path: Path, data: Path) -> None:
    token = tmp_path / "token"
    token.write_text(TOKEN)
    shares = _mount(tmp_path, data, mode="ask", api=tmp_path / "no.sock", token_file=token)
    try:
        started = time.monotonic()
        with pytest.raises(PermissionError):
            (shares.mounted[0].mount / "a.txt").read_text()
        assert time.monotonic() - started < 5
    finally:
        shares.stop()
    [line] = _opens(tmp_path)
    assert line["verdict"] == "deny" and "gateway unreachable" in line["reason"]


async def test_ask_mode_holds_an_open_until_a_person_decides(tmp_path: Path, data: Path) -> None:
    gw = ApiGateway(tmp_path)  # the gateway's asker behind a real control API
    await gw.api.start()
    client = GatewayClient(gw.socket, TOKEN)
    token = tmp_path / "token"
    token.write_text(TOKEN)
    shares = await asyncio.to_thread(_mount, tmp_path, data, mode="ask", api=gw.socket,
                                     token_file=token)  # fmt: skip
    mount = shares.mounted[0].mount
    try:
        read = asyncio.create_task(asyncio.to_thread((mount / "a.txt").read_text))
        item = await _one_pending(client)
        assert item.kind == PendingKind.FILE and item.path == "~/data/a.txt"
        assert item.dst == "/d/a.txt" and item.access == "read" and item.pid > 0
        # While it waits, the folder can be listed (another thread of the daemon).
        names = await asyncio.wait_for(asyncio.to_thread(lambda: sorted(
            p.name for p in mount.iterdir())), 10)  # fmt: skip
        assert names == ["a.txt", "b.txt"] and not read.done()
        await client.decide(DecisionRequest(Action.ALLOW, pending_id=item.id))
        assert await asyncio.wait_for(read, 10) == "alpha"
        # Once is this open only: the next is asked again; deny refuses it.
        again = asyncio.create_task(asyncio.to_thread((mount / "a.txt").read_text))
        item = await _one_pending(client)
        await client.decide(DecisionRequest(Action.DENY, pending_id=item.id))
        with pytest.raises(PermissionError):
            await asyncio.wait_for(again, 10)
        # Always for the folder: stored, and later opens are not asked.
        other = asyncio.create_task(asyncio.to_thread((mount / "b.txt").read_text))
        item = await _one_pending(client)
        request = DecisionRequest(Action.ALLOW, pending_id=item.id, target=Target.DOMAIN,
                                  lifetime="always")  # fmt: skip
        result = await client.decide(request)
        assert result.rule is not None and result.rule.file == "~/data/*"
        assert await asyncio.wait_for(other, 10) == "beta"
        assert await asyncio.wait_for(asyncio.to_thread((mount / "a.txt").read_text), 10) == (
            "alpha"
        )
    finally:
        await asyncio.to_thread(shares.stop)
        gw.api.close()
    verdicts = [(line["path"], line["verdict"], line["origin"]) for line in _opens(tmp_path)]
    assert verdicts == [
        ("~/data/a.txt", "allow", "person"), ("~/data/a.txt", "deny", "person"),
        ("~/data/b.txt", "allow", "rule"), ("~/data/a.txt", "allow", "rule"),
    ]  # fmt: skip


async def _one_pending(client: GatewayClient) -> Any:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        items = await client.pending()
        if items:
            return items[0]
        await asyncio.sleep(0.02)
    raise AssertionError("no open was held")


def test_changes_that_open_nothing_are_write_decisions(tmp_path: Path, data: Path) -> None:
    """In a writable share, deleting, renaming or truncating by name needs a write rule."""
    with RuleStore(tmp_path / "rules.db") as store:
        store.add(Rule(Action.ALLOW, proto=Proto.FILE, file="~/data/b.txt", access="write"))
    deciding = Deciding(home=str(tmp_path / "home"), rules=tmp_path / "rules.db", mode="enforce")
    shares = start_shares([parse_share(f"{data}:/d:rw")], tmp_path / "session", "sess1",
                          1 << 20, deciding)  # fmt: skip
    mount = shares.mounted[0].mount
    try:
        for change in (lambda: (mount / "a.txt").unlink(),
                       lambda: (mount / "a.txt").rename(mount / "c.txt"),
                       lambda: os.truncate(mount / "a.txt", 0)):  # fmt: skip
            with pytest.raises(PermissionError):
                change()
        assert (data / "a.txt").read_text() == "alpha" and not (data / "c.txt").exists()
        (mount / "b.txt").unlink()  # a write rule allows it
        assert not (data / "b.txt").exists()
    finally:
        shares.stop()
    methods = [(Path(o["path"]).name, o["method"], o["verdict"]) for o in _opens(tmp_path)]
    assert methods == [
        ("a.txt", "unlink", "deny"), ("a.txt", "rename", "deny"), ("a.txt", "truncate", "deny"),
        ("b.txt", "unlink", "allow"),
    ]  # fmt: skip
