"""The CLI's output choke point (sandbox/textout.py) and the line prompt's wording
(sandbox/line_prompt.py), without a terminal."""

from __future__ import annotations

import io
import sys
from typing import cast

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sandbox.prompt_text import (
    lasting_target,
    options_text,
    question_text,
    rule_preview,
    where,
)
from sandbox.textout import (
    TerminalGuard,
    echo_exact,
    guard,
    guard_streams,
    rule_text,
    show_name,
)
from snitch.core.model import Action, Pending, Rule
from snitch.core.safetext import safe
from tests.approver.terminal import CLEAR, CYRILLIC_NAME, OSC_TITLE, PUNY_NAME, terminal_problems


@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",))))
def test_guarded_text_is_inert(text: str) -> None:
    assert terminal_problems(guard(text).encode()) == []


@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",))))
def test_guard_leaves_safe_text_alone(text: str) -> None:
    """Fields made safe first are not escaped a second time by the stream."""
    assert guard(safe(text)) == safe(text)


def test_guard_keeps_lines_tabs_and_backslashes() -> None:
    assert guard("a\tb\nc\\x1b") == "a\tb\nc\\x1b"
    assert guard(f"t{OSC_TITLE}\r") == "t\\x1b]0;pwned\\x07\\x0d"


class _Tty(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


@pytest.mark.parametrize("tty", [True, False])
def test_streams_are_guarded_and_machine_formats_exact_only_to_a_pipe(
    tty: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    out, err = _Tty(tty), _Tty(tty)
    monkeypatch.setattr(sys, "stdout", out)
    monkeypatch.setattr(sys, "stderr", err)
    with guard_streams():
        assert isinstance(sys.stdout, TerminalGuard)
        print(f"note {CLEAR}")
        print(f"error {OSC_TITLE}", file=sys.stderr)
        echo_exact(f"csv,{CLEAR}\n")
        with pytest.raises(TypeError):
            sys.stdout.write(cast(str, b"bytes"))
    assert sys.stdout is out and sys.stderr is err
    assert err.getvalue() == "error \\x1b]0;pwned\\x07\n"
    exact = f"csv,{CLEAR}\n" if not tty else "csv,\\x1b[2J\\x1b[H\n"
    assert out.getvalue() == "note \\x1b[2J\\x1b[H\n" + exact


def test_names_keep_their_mark_when_cut() -> None:
    shown = show_name("a-very-long-label-that-goes-on." + CYRILLIC_NAME, 40)
    assert shown.startswith("a-very-long") and "…" in shown
    assert shown.endswith(
        "example.test (a-very-long-label-that-goes-on.xn--pypal-4ve.example.test) [IDN]"
    )
    assert show_name("api.example.test", 40) == "api.example.test"
    assert rule_text(Rule(Action.ALLOW, host=PUNY_NAME, port_lo=443, port_hi=443)) == (
        f"allow {PUNY_NAME}:443/any ({CYRILLIC_NAME}) [IDN]"
    )


def _item(**kw: object) -> Pending:
    base: dict[str, object] = dict(id="s-1", session="s", kind="flow", proto="tcp",
                                   src="10.0.0.2", sport=40000, dst="203.0.113.9",
                                   dport=443)  # fmt: skip
    base.update(kw)
    return Pending(**base)  # type: ignore[arg-type]


def test_a_verified_name_is_asked_by_name_with_its_address() -> None:
    item = _item(names=["api.example.test"])
    assert question_text(item) == (
        "Allow connection to api.example.test 443/tcp (address 203.0.113.9)? "
    )
    assert lasting_target(item) == "api.example.test"
    assert rule_preview(item, Action.ALLOW) == "allow api.example.test:443/tcp"


def test_a_claimed_name_is_shown_unverified_and_never_the_rule_target() -> None:
    item = _item(claimed="pypi.test", sni="pypi.test")
    assert question_text(item) == (
        "Allow connection to 203.0.113.9 443/tcp, which claims to be pypi.test (unverified)? "
    )
    assert where(item) == "203.0.113.9 443/tcp"
    assert lasting_target(item) == "203.0.113.9"
    assert rule_preview(item, Action.DENY) == "deny 203.0.113.9:443/tcp"


def test_a_synthetic_address_is_never_offered_as_a_rule_target() -> None:
    named = _item(dst="198.18.0.7", synthetic=True, names=["evil.example.test"])
    assert "198.18" not in question_text(named) + rule_preview(named, Action.ALLOW)
    assert "not looked up yet" in question_text(named)
    assert lasting_target(named) == "evil.example.test"
    bare = _item(dst="198.18.0.7", synthetic=True)
    assert lasting_target(bare) is None
    assert options_text(bare) == "[a]llow once / [d]eny once "


def test_question_escapes_everything_the_sandbox_controls() -> None:
    item = _item(names=[f"x{CLEAR}.example.test"], claimed=f"pypi.test{OSC_TITLE}", flows=3)
    text = question_text(item)
    assert terminal_problems(text.encode()) == []
    assert "\\x1b[2J" in text and "\\x1b]0;pwned" in text and "[3 connections]" in text
