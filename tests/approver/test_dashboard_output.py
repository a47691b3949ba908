"""Issue 12, item 2: the dashboard's output pane shows the command's bytes as inert text.

Reproduced attack: the sandbox printed escape sequences that repainted the held row
``evil-dash.example.test 4444/tcp`` as ``pypi.test 443/tcp``, retitled the terminal and wrote
the clipboard (OSC 52). Now every byte a terminal would act on is shown escaped in the
pane; only SGR colours are kept (not conceal). tests/e2e/test_dashboard_tmux.py tries the
same through a real terminal against a real gateway.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from hypothesis import given
from hypothesis import strategies as st
from rich.style import Style

from tests.fakes import FakeGateway, pending
from tests.tui.conftest import chunks, make_app, screen_lines, terminal_controls, wait_for
from tui.inert import output_line
from tui.widgets.output import FLUSH_AFTER, MAX_PARTIAL, OutputPane

SIZE = (100, 30)
HOSTILE = (
    "\x1b]0;pwned title\x07"  # OSC 0: the terminal's title
    "\x1b]52;c;cHlwaS50ZXN0\x07"  # OSC 52: write "pypi.test" to the clipboard
    "\x1b[2J\x1b[H"  # clear the screen, cursor home
    "\x1b[5;1H    30s  pypi.test                     443/tcp\x1b[K"  # a fake row
    "\x9b1;1H"  # C1 CSI: cursor home in one byte
    "\x1bP+q544e\x1b\\"  # DCS: a terminal query
    "\x1b]8;;http://evil.example.test/\x1b\\click\x1b]8;;\x1b\\"  # a hyperlink
    "ok\rpypi.test"  # a carriage return that would overwrite the line
    "\u202eabc\n"  # a bidi override
)


@pytest.mark.asyncio
async def test_the_commands_escape_sequences_never_reach_the_terminal() -> None:
    fake = FakeGateway(pending=[pending("p1", "evil-dash.example.test", "198.18.0.5", 4444)])
    app = make_app(fake, output=chunks(("stdout", HOSTILE), ("stderr", HOSTILE), ("exit", "1")))
    async with app.run_test(size=SIZE) as pilot:
        pane = app.query_one(OutputPane)
        await wait_for(pilot, lambda: pane.exit_code == "1" and app.pending_view.rows)
        await pilot.pause(0.1)
        assert terminal_controls(app) == []
        lines = screen_lines(app)
        border = next(i for i, line in enumerate(lines) if "output · exit 1" in line)
        rows = [line for line in lines[:border] if "4444/tcp" in line]  # the row, the detail
        assert rows and all("evil-dash.example.test" in row for row in rows)
        assert not [line for line in lines[:border] if "pypi.test" in line]  # only in the pane
        pane_text = "\n".join(lines[border:])
        for shown in ("\\x1b]0;pwned title\\x07", "\\x1b]52;c;cHlwaS50ZXN0", "\\x1b[2J",
                      "\\x9b1;1H", "\\x1bP+q", "\\x1b]8;;http", "ok\\x0dpypi.test",
                      "\\u202eabc"):  # fmt: skip
            assert shown in pane_text, shown
        assert app.title == "coderun"


def test_colours_are_kept_and_nothing_is_hidden() -> None:
    text = output_line("\x1b[1;31mred\x1b[0m plain \x1b[8;32msecret\x1b[0m \x1b[38;5;208mx")
    assert text.plain == "red plain secret x"
    styles = {text.plain[span.start : span.end]: span.style for span in text.spans}
    red = styles["red"]
    assert isinstance(red, Style) and red.color is not None and red.color.name == "color(1)"
    assert red.bold
    secret = styles["secret"]
    assert isinstance(secret, Style) and not secret.conceal  # shown, in green
    assert secret.color is not None and secret.color.name == "color(2)"


def _acts(ch: str) -> bool:
    code = ord(ch)
    return (code < 0x20 and ch != "\t") or 0x7F <= code <= 0x9F


@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",))))
def test_no_printed_text_keeps_a_control_character(line: str) -> None:
    text = output_line(line)
    assert not any(_acts(ch) for ch in text.plain)
    assert not any(isinstance(s.style, Style) and s.style.conceal for s in text.spans)


@given(st.lists(st.sampled_from(["\x1b", "[", "]", "1", ";", "m", "8", "52", "\x07", "x", "\\"])))
def test_escape_fragments_stay_inert(parts: list[str]) -> None:
    text = output_line("".join(parts))
    assert "\x1b" not in text.plain and "\x07" not in text.plain


async def endless(pieces: int, sent: list[int]) -> AsyncIterator[tuple[str, str]]:
    """A line that never ends, a piece every 0.05 s (a progress bar, or a flood);
    ``sent`` counts the pieces given out so far."""
    for _ in range(pieces):
        sent.append(1)
        yield ("stdout", "x" * 1000)
        await asyncio.sleep(0.05)
    yield ("exit", "0")


@pytest.mark.asyncio
async def test_a_line_without_end_is_shown_in_time_and_in_pieces() -> None:
    sent: list[int] = []
    pieces = 100  # 5 s of them
    app = make_app(FakeGateway(), output=endless(pieces, sent))
    async with app.run_test(size=SIZE) as pilot:
        pane = app.query_one(OutputPane)
        await wait_for(pilot, lambda: pane.lines, timeout=FLUSH_AFTER + 10)
        # shown while the pieces still come: not postponed by every new one (that would
        # show nothing before the stream ends, however fast the machine)
        assert len(sent) < pieces, len(sent)
        await wait_for(pilot, lambda: pane.exit_code == "0")
        assert max(len(strip.text) for strip in pane.lines) <= max(MAX_PARTIAL, SIZE[0])
