"""The 403 a refused request gets: header, bodies, and hostile host/path/method text."""

from __future__ import annotations

import json

import pytest

from snitch.core.model import Action, Rule
from snitch.gateway.refusal import (
    DENIED_HEADER,
    ascii_safe,
    build_refusal,
    how_to_allow,
    refused_by,
    wants_json,
)

RULE = Rule(Action.DENY, host="api.example.test", port_lo=80, port_hi=80, path_prefix="/v1/",
            method="POST")  # fmt: skip


def test_the_header_names_the_rule_and_how_to_ask() -> None:
    why = refused_by(RULE, 12)
    assert why == "rule 12: deny api.example.test:80/v1/ [POST]"
    hint = how_to_allow("api.example.test", "198.51.100.5", 80, "post", "/v1/items?x=1", 0)
    assert hint == ("coderun rules add allow api.example.test --port 80 --method POST "
                    "--path /v1/ --priority 1")  # fmt: skip
    refusal = build_refusal(why, hint, "POST", "http://api.example.test/v1/items")
    headers = dict(refusal.headers)
    assert refusal.status == 403 and refusal.reason == why
    assert headers[DENIED_HEADER] == f"{why}; ask: {hint}"
    assert headers["Content-Type"].startswith("text/plain")
    assert refusal.body.decode().splitlines() == [
        f"blocked by coderun: {why}",
        "request: POST http://api.example.test/v1/items",
        f"to allow it: {hint}",
    ]


def test_no_rule_matched_and_a_json_body_for_a_client_that_accepts_json() -> None:
    assert refused_by(None, None) == "no rule matched"
    hint = how_to_allow("api.example.test", "198.51.100.5", 8080, "GET", "/")
    refusal = build_refusal(
        "no rule matched", hint, "GET", "http://x/", "text/html, application/json;q=0.9"
    )
    body = json.loads(refusal.body)
    assert body == {"error": "blocked by coderun", "denied": "no rule matched", "method": "GET",
                    "url": "http://x/", "ask": hint}  # fmt: skip
    assert dict(refusal.headers)["Content-Type"] == "application/json"


@pytest.mark.parametrize(
    ("accept", "json_"),
    [("application/json", True), ("application/problem+json", True), ("*/*", False),
     ("text/html", False), ("", False), ("application/jsonx", False)],
)  # fmt: skip
def test_wants_json(accept: str, json_: bool) -> None:
    assert wants_json(accept) is json_


HOSTILE = [
    "api.example.test\r\nSet-Cookie: pwned=1",
    "\x1b]0;pwned\x07",
    "a\u202eb.example.test",
    "caf\u00e9.example.test",
    "x" * 5000,
]


@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_host_path_and_method_are_neutralised_everywhere(text: str) -> None:
    rule = Rule(Action.DENY, host=text, path_prefix="/" + text, method="POST")
    why = refused_by(rule, 3)
    hint = how_to_allow(text, "198.51.100.5", 80, text, "/" + text + "/x", 2)
    refusal = build_refusal(why, hint, text, "http://" + text, "application/json")
    for name, value in refusal.headers:
        assert value.isascii() and value.isprintable(), (name, value)
        assert "\r" not in value and "\n" not in value and len(value) < 700
    assert refusal.body.isascii()
    assert b"\x1b" not in refusal.body and b"\r" not in refusal.body
    json.loads(refusal.body)  # still one JSON document
    text_body = build_refusal(why, hint, text, "http://" + text).body
    assert len(text_body.splitlines()) == 3 and b"\x1b" not in text_body
    # A host that is not a plain name is never offered as a rule's target: the address is.
    if "\r" in text or "\x1b" in text or "\u202e" in text:
        assert "allow 198.51.100.5 " in hint


def test_ascii_safe_escapes_visibly_and_cuts() -> None:
    assert ascii_safe("a\r\nb\\c\u202e\U0001f600") == "a\\x0d\\x0ab\\\\c\\u202e\\U0001f600"
    assert ascii_safe("y" * 50, 10) == "yyyyyyy..."
