"""Request-level decisions as mitmproxy's addon makes them (requestgate.py), on a real rule
book and asker: allowed, refused in band, held for a person, the deadline's default."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from pathlib import Path

from snitch.core.model import Action, DecisionRequest, Mode, Rule
from snitch.core.store import RuleStore
from snitch.gateway.refusal import DENIED_HEADER
from snitch.gateway.requestgate import Outcome, RequestGate, SeenRequest
from tests.fakes import gate

RULES = [
    Rule(Action.ALLOW, host="api.example.test", path_prefix="/v1/", method="GET,HEAD"),
    Rule(Action.DENY, host="api.example.test", path_prefix="/v1/"),
]
GET = SeenRequest("10.0.0.2", 40000, "198.51.100.5", 80, "api.example.test", "GET",
                  "/v1/items?x=1", "http://api.example.test/v1/items?x=1")  # fmt: skip
POST = dataclasses.replace(GET, method="POST", size=12, content_type="application/json",
                           accept="application/json")  # fmt: skip


def request_gate(tmp_path: Path, mode: Mode, rules: list[Rule], **kw: float) -> RequestGate:
    g, _ = gate(tmp_path, mode, rules, **kw)
    g.names.add("198.51.100.5", "api.example.test", 60)
    return RequestGate(g)


def judge(rg: RequestGate, seen: SeenRequest) -> Outcome | None:
    return asyncio.run(rg.judge(seen))


def test_a_method_rule_allows_get_and_refuses_post_to_the_same_url(tmp_path: Path) -> None:
    rg = request_gate(tmp_path, Mode.ENFORCE, list(RULES))
    got = judge(rg, GET)
    assert got is not None and got.refusal is None and got.decision.rule_id == -1
    refused = judge(rg, POST)
    assert refused is not None and refused.refusal is not None
    header = dict(refused.refusal.headers)[DENIED_HEADER]
    assert header.startswith("rule -2: deny api.example.test/v1/; ask: coderun rules add allow")
    assert "--method POST --path /v1/ --priority 1" in header
    assert refused.decision.reason == "rule -2: deny api.example.test/v1/"
    assert json.loads(refused.refusal.body)["denied"] == "rule -2: deny api.example.test/v1/"


def test_no_rule_matched_is_refused_in_enforce_and_let_go_in_audit(tmp_path: Path) -> None:
    other = dataclasses.replace(GET, path="/v2/", url="http://api.example.test/v2/")
    enforce = judge(request_gate(tmp_path / "e", Mode.ENFORCE, list(RULES)), other)
    assert enforce is not None and enforce.refusal is not None
    assert enforce.decision.reason == "no rule matched"
    audit = judge(request_gate(tmp_path / "a", Mode.AUDIT, list(RULES)), POST)
    assert audit is not None and audit.refusal is None and audit.decision.action is Action.ALLOW
    assert "enforce would deny" in audit.decision.reason


def test_a_bare_host_rule_or_no_request_rules_leave_the_request_alone(tmp_path: Path) -> None:
    rg = request_gate(
        tmp_path / "h", Mode.ENFORCE, [*RULES, Rule(Action.ALLOW, host="api.example.test")]
    )
    assert judge(rg, dataclasses.replace(GET, path="/v2/")) is None
    assert judge(request_gate(tmp_path / "n", Mode.ENFORCE, []), POST) is None


def test_an_unverified_host_header_never_matches_an_allow_rule(tmp_path: Path) -> None:
    rg = request_gate(tmp_path, Mode.ENFORCE, list(RULES))
    forged = dataclasses.replace(GET, dst="198.51.100.9")  # Host claims api.example.test
    got = judge(rg, forged)
    assert got is None or got.refusal is not None


def test_a_deny_rule_naming_the_host_refuses_wherever_it_goes(tmp_path: Path) -> None:
    rg = request_gate(tmp_path, Mode.ENFORCE, [Rule(Action.DENY, host="api.example.test")])
    got = judge(rg, dataclasses.replace(GET, dst="198.51.100.9"))
    assert got is not None and got.refusal is not None
    assert got.decision.reason.startswith("Host api.example.test named by rule -1: deny")


async def _held(rg: RequestGate, seen: SeenRequest) -> tuple[asyncio.Task[Outcome | None], str]:
    task = asyncio.get_running_loop().create_task(rg.judge(seen))
    for _ in range(100):
        await asyncio.sleep(0)
        assert rg.gate.asker is not None
        if rg.gate.asker.pending():
            break
    [item] = rg.gate.asker.pending() if rg.gate.asker else []
    return task, item.id


def test_ask_holds_the_request_and_this_path_prefix_stores_a_rule(tmp_path: Path) -> None:
    rg = request_gate(tmp_path, Mode.ASK, list(RULES))
    other = dataclasses.replace(POST, path="/v2/a/b?q=1", url="http://api.example.test/v2/a/b?q=1")

    async def scenario() -> tuple[Outcome | None, Outcome | None]:
        task, item_id = await _held(rg, other)
        asker = rg.gate.asker
        assert asker is not None
        [item] = asker.pending()
        assert (item.kind, item.method, item.url, item.size, item.content_type) == (
            "request",
            "POST",
            other.url,
            12,
            "application/json",
        )
        asker.decide(DecisionRequest(Action.ALLOW, pending_id=item_id, lifetime="always"))
        first = await task
        again = await rg.judge(dataclasses.replace(other, path="/v2/a/c"))  # the rule decides
        return first, again

    first, again = asyncio.run(scenario())
    assert first is not None and first.refusal is None and first.decision.action is Action.ALLOW
    assert again is not None and again.refusal is None
    [stored] = [r for r in RuleStore(tmp_path / "rules.db").list()]
    assert (stored.host, stored.port_lo, stored.path_prefix, stored.method) == (
        "api.example.test",
        80,
        "/v2/a/",
        "POST",
    )


def test_a_held_request_denied_once_or_expired_gets_a_403_with_the_reason(tmp_path: Path) -> None:
    rg = request_gate(tmp_path, Mode.ASK, list(RULES), timeout=0.0)
    other = dataclasses.replace(GET, path="/v2/", url="http://api.example.test/v2/")

    async def scenario() -> Outcome | None:
        task, _ = await _held(rg, other)
        assert rg.gate.asker is not None
        rg.gate.asker.expire()
        return await task

    got = asyncio.run(scenario())
    assert got is not None and got.refusal is not None
    assert got.decision.reason == "ask: expired, default deny"
    assert dict(got.refusal.headers)[DENIED_HEADER].startswith("ask: expired, default deny; ask:")
