"""The one neutraliser every human-readable output uses (snitch/core/safetext.py)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from snitch.core.safetext import IDN_MARK, elide_name, safe, safe_block, safe_name

HOSTILE = [
    "\x1b]0;pwned\x07",  # OSC title
    "\x1b[2J\x1b[H",  # clear screen, cursor home
    "\x1b]52;c;cHlwaS50ZXN0\x07",  # OSC 52 clipboard write
    "\x9b2J",  # C1 CSI
    "abc\u202egro.ipyp",  # bidi override
    "pypi\u200b.test",  # zero-width space
    "a\rpypi.test",  # carriage return overwrites the line
    "\x7f",
    "line\u2028break",
]


@pytest.mark.parametrize("text", HOSTILE)
def test_nothing_a_terminal_acts_on_survives(text: str) -> None:
    out = safe(text)
    assert out.isprintable()
    assert not any(0x80 <= ord(c) <= 0x9F for c in out)
    assert "\u202e" not in out and "\u200b" not in out


def test_escapes_are_visible_and_unambiguous() -> None:
    assert safe("\x1b[2J") == "\\x1b[2J"
    assert safe("a\u202eb") == "a\\u202eb"
    assert safe("\\x1b") == "\\\\x1b"  # a literal backslash can't fake an escape
    assert safe("plain.example.test") == "plain.example.test"


def test_block_keeps_lines_but_not_carriage_returns() -> None:
    assert safe_block("one\ntwo\tthree\r\x1b[1A") == "one\ntwo\tthree\\x0d\\x1b[1A"


@given(st.text())
def test_any_text_becomes_printable(text: str) -> None:
    out = safe(text)
    assert out.isprintable()
    assert all(not (0x80 <= ord(c) <= 0x9F) for c in out)


@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",))))
def test_block_output_has_no_escape_or_cr(text: str) -> None:
    out = safe_block(text)
    assert "\x1b" not in out and "\r" not in out
    assert all(c.isprintable() or c in "\n\t" for c in out)


def test_internationalised_names_are_marked_with_their_other_form() -> None:
    cyrillic = "p\u0430ypal.example.test"  # a Cyrillic а
    shown = safe_name(cyrillic)
    assert "xn--" in shown and IDN_MARK in shown
    puny = safe_name("xn--pypal-4ve.example.test")
    assert IDN_MARK in puny and "\u0430" in puny
    assert safe_name("api.example.test") == "api.example.test"


def test_odd_ascii_names_are_escaped() -> None:
    assert safe_name("x\x1b[2J.example.test") == "x\\x1b[2J.example.test"


@pytest.mark.parametrize("width", range(14, 40))
def test_elided_names_keep_their_registrable_domain(width: int) -> None:
    name = "pypi.test.a-very-long-label-that-pushes.evil.example.test"
    out = elide_name(name, width)
    assert len(out) <= width
    assert out.endswith("example.test")


def test_short_names_are_not_elided() -> None:
    assert elide_name("api.example.test", 40) == "api.example.test"


def test_terminal_filter_passes_screen_control_and_drops_string_sequences() -> None:
    from snitch.core.safetext import TerminalFilter

    f = TerminalFilter()
    data = (b"a\x1b[31mred\x1b]0;title\x07b\x1b]52;c;cHlwaS50ZXN0\x1b\\c"
            b"\x1bPtmux;\x1b\x1b]52;c;AA\x07\x1b\\d\x1b_apc\x1b\\e\x1b[0m\r\n")  # fmt: skip
    assert f.feed(data) == b"a\x1b[31mredbcde\x1b[0m\r\n"
    # Split anywhere, the same.
    h = TerminalFilter()
    assert b"".join(h.feed(data[i : i + 1]) for i in range(len(data))) == (
        b"a\x1b[31mredbcde\x1b[0m\r\n"
    )


def test_terminal_filter_ends_an_unterminated_string_after_its_limit() -> None:
    from snitch.core.safetext import TerminalFilter

    f = TerminalFilter(limit=16)
    assert f.feed(b"\x1b]" + b"x" * 15) == b""
    assert f.feed(b"yz") == b"z"
