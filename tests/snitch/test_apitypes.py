"""The control API's typed answers survive the wire: ``to_dict`` is the documented JSON
(docs/api.md) and ``from_dict(json)`` gives the same object back."""

from __future__ import annotations

import json

from snitch.core.apitypes import DecideResult, SessionInfo
from snitch.core.model import Action, PromptCounts, Rule


def wire(d: dict[str, object]) -> dict[str, object]:
    result: dict[str, object] = json.loads(json.dumps(d))
    return result


def test_session_info_round_trips_through_json() -> None:
    info = SessionInfo(
        session="s1", mode="ask", command=("python3", "-c", "print(1)"), image="py:test",
        started=1_700_000_000.5, gateway_ip="172.30.0.2", ask_timeout=30.0, ask_default="deny",
        prompts=PromptCounts(max_pending=5, rate=2.5, pending=1, held=2, refused_full=3),
        log_dropped=4, labels=("team=web", "env=ci"),
    )  # fmt: skip
    d = wire(info.to_dict())
    assert list(d) == ["session", "mode", "command", "image", "started", "gateway_ip",
                       "ask_timeout", "ask_default", "prompts", "log_dropped",
                       "labels"]  # fmt: skip
    assert d["labels"] == ["team=web", "env=ci"]
    assert d["command"] == ["python3", "-c", "print(1)"]
    assert d["prompts"] == PromptCounts(5, 2.5, 1, 2, 0, 3, 0).to_dict()
    assert SessionInfo.from_dict(d) == info


def test_session_info_outside_ask_mode_has_nulls() -> None:
    info = SessionInfo("s2", "enforce", ("true",))
    d = wire(info.to_dict())
    assert (d["ask_timeout"], d["ask_default"], d["prompts"]) == (None, None, None)
    assert SessionInfo.from_dict(d) == info


def test_decide_result_round_trips_and_writes_dry_run_only_when_true() -> None:
    rule = Rule(Action.ALLOW, host="api.example.test", port_lo=443, port_hi=443, id=7)
    stored = DecideResult(("p1", "p2"), rule)
    d = wire(stored.to_dict())
    assert d == {"decided": ["p1", "p2"], "rule": rule.to_dict()}
    assert DecideResult.from_dict(d) == stored
    once = DecideResult(("p3",), None, dry_run=True)
    d = wire(once.to_dict())
    assert d == {"decided": ["p3"], "rule": None, "dry_run": True}
    assert DecideResult.from_dict(d) == once
