"""What the sandbox controls, made into inert ``rich.text.Text`` for the dashboard.

Names, addresses claimed in a TLS hello, URLs, log messages, error messages and every byte
the sandboxed command prints are hostile: terminal escape sequences, bidi overrides,
Textual markup (``[b]``, ``[@click=app.quit]``, an unbalanced ``[/x]`` that raises), names
long enough to push their end out of a cell. Widgets get them only through these helpers:
the text is escaped with ``snitch.core.safetext`` and wrapped in ``Text`` (which is never parsed
as markup); a name is elided in the middle, so its registrable domain stays visible.
"""

from __future__ import annotations

import re

from rich.ansi import AnsiDecoder
from rich.style import Style
from rich.text import Text

from snitch.core.safetext import ELLIPSIS, IDN_MARK, elide_name, safe, safe_name

NAME_WIDTH = 80
"""A name in a detail line or a dialog is elided beyond this (a cell has its own width)."""
MIN_HEAD = 8
"""Characters of a long name's start kept, when its end leaves room for them."""

_SGR = re.compile(r"\x1b\[([0-9;]*)m")
_NO_CONCEAL = Style(conceal=False)  # hidden text: the person sees what the command printed


def plain(text: object, style: str | Style = "") -> Text:
    """One line of untrusted text: escaped, never markup."""
    return Text(safe(text), style=style)


def shown_name(name: str, width: int | None = NAME_WIDTH) -> str:
    """A host name for a person (``safe_name``: escaped, an IDN with its other form and
    a mark) in at most ``width`` characters, cut in the middle, never at its end.

    When an internationalised name and its other form do not both fit, the name is
    elided and keeps its mark; the detail line holds both.
    """
    full = safe_name(name)
    if width is None or len(full) <= width:
        return full
    mark = f" {IDN_MARK}"
    if full.endswith(mark):
        return elide_middle(safe(name), max(1, width - len(mark))) + mark
    return elide_middle(full, width)


def elide_middle(name: str, width: int) -> str:
    """``name`` (made safe) in ``width``: as many of its last labels as fit (at least the
    registrable domain, ``snitch.core.safetext.elide_name``), then as much of its start."""
    if len(name) <= width:
        return name
    labels = name.split(".")
    head_room = min(MIN_HEAD, width // 4)
    tail = ""
    for start in range(len(labels) - 2, 0, -1):
        candidate = ".".join(labels[start:])
        if len(candidate) + 1 + head_room > width:
            break
        tail = candidate
    if not tail:
        return elide_name(name, width)
    return name[: width - len(tail) - 1] + ELLIPSIS + tail


def name_text(name: str, width: int | None = NAME_WIDTH, style: str = "") -> Text:
    return Text(shown_name(name, width), style=style)


def output_line(line: str, style: str = "") -> Text:
    """One line the sandboxed command printed, as it reads on a plain terminal but inert.

    Its SGR colour sequences (``ESC [ … m``) are kept, except conceal; every other byte a
    terminal would act on (cursor moves, clearing, titles, OSC 52 clipboard writes,
    hyperlinks, ``\\r``, bidi overrides) is shown escaped (``\\x1b``), so nothing it
    prints can leave its pane or reach the terminal.
    """
    parts: list[str] = []
    pos = 0
    for match in _SGR.finditer(line):
        parts.append(safe(line[pos : match.start()], keep="\t"))
        parts.append(match.group(0))
        pos = match.end()
    parts.append(safe(line[pos:], keep="\t"))
    text = AnsiDecoder().decode_line("".join(parts))  # sees only the SGR sequences kept
    text.spans = [span._replace(style=_revealed(span.style)) for span in text.spans]
    if style:
        text.stylize_before(style)
    return text


def _revealed(style: str | Style) -> str | Style:
    if isinstance(style, Style) and style.conceal:
        return style + _NO_CONCEAL
    return style
