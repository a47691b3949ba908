"""A held HTTP request as the line prompt and the dashboard show it: method, URL, size,
content type, the "this path prefix" rule; hostile URL text escaped."""

from __future__ import annotations

import dataclasses

from sandbox.prompt_text import options_text, question_text, rule_preview
from snitch.core.model import Action, PendingKind
from tests.fakes import pending
from tui.widgets.pendingrow import PendingRow, describe

ITEM = dataclasses.replace(
    pending("r1", "api.example.test", "198.51.100.5", 80, kind=PendingKind.REQUEST),
    method="POST", url="http://api.example.test/v1/items/7?x=1", size=12,
    content_type="application/json",
)  # fmt: skip


def test_the_question_names_the_request_and_the_path_prefix_choice() -> None:
    assert question_text(ITEM) == (
        "Allow request POST http://api.example.test/v1/items/7?x=1 (12 bytes, "
        "application/json) to api.example.test 80/tcp? "
    )
    assert "[A]llow this path prefix" in options_text(ITEM)
    assert rule_preview(ITEM, Action.ALLOW) == "allow api.example.test:80/v1/items/ [POST]"


def test_hostile_url_and_content_type_are_escaped() -> None:
    item = dataclasses.replace(ITEM, url="http://x.test/\x1b]0;pwned\x07/a", method="P\rST",
                               content_type="text/\u202ehtml")  # fmt: skip
    for text in (question_text(item), rule_preview(item, Action.DENY),
                 describe(PendingRow(1, "s1", item)).plain):  # fmt: skip
        assert "\x1b" not in text and "\r" not in text and "\u202e" not in text
        assert "\\x1b]0;pwned\\x07" in text


def test_the_dashboard_detail_says_it_is_a_request() -> None:
    text = describe(PendingRow(1, "s1", ITEM)).plain
    assert text.startswith("HTTP request POST http://api.example.test/v1/items/7?x=1 · 12 bytes")
    assert "application/json" in text and "its connection goes on" in text
