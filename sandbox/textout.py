"""What coderun prints for a person: nothing the sandbox controls reaches a terminal raw.

Two layers, both over ``snitch/core/safetext.py``:

- **Fields.** Every renderer (``records.py``, ``rules_cli.py``, the line prompt) makes
  each untrusted field safe *before* laying it out (``safe``, ``show_name``,
  ``rule_text``): a name cannot forge a line or break a column, and a look-alike name is
  shown with its other form and marked.
- **The streams.** For the whole run of the ``coderun`` command, ``sys.stdout`` and
  ``sys.stderr`` are a ``TerminalGuard`` (``guard_streams``, installed by the CLI's
  group): whatever is written as text — our own lines, click's error messages quoting an
  argument, a library's message — has every control (C0 but newline and tab, C1, DEL),
  bidi and invisible character escaped. Text already made safe passes unchanged (a
  backslash is left alone here, so nothing is escaped twice).

Machine formats (CSV, ``export``, ``rules export``) go through ``exact_output``: exact to
a pipe or a file, escaped like everything else when the output is a terminal (a person
reads it there; the terminal must not act on it). JSON needs nothing: its encoder
escapes every control and non-ASCII character itself.

Bytes written to ``sys.stdout.buffer`` are not text and are not guarded: that is how a
run passes the command's own output through when no front (prompt) is attached.
"""

from __future__ import annotations

import contextlib
import io
import re
import sys
from collections.abc import Iterator
from typing import IO, TextIO, cast

from snitch.core.model import Rule
from snitch.core.safetext import elide_name, is_plain_name, safe, safe_block, safe_name

# In ASCII text only C0 controls (but newline and tab) and DEL need escaping.
_ASCII_BAD = re.compile("[\x00-\x08\x0b-\x1f\x7f]")


def guard(text: str) -> str:
    """``text`` with every character a terminal acts on or hides escaped visibly;
    newlines, tabs and backslashes stay (so text made safe already is left as it is)."""
    if text.isascii() and not _ASCII_BAD.search(text):
        return text
    return "\\".join(safe_block(part) for part in text.split("\\"))


class TerminalGuard(io.TextIOBase):
    """A text stream that guards everything written to it before passing it on."""

    def __init__(self, inner: TextIO) -> None:
        super().__init__()
        self.inner = inner
        self.passthrough = False  # set by exact_output for a machine format to a pipe

    def write(self, s: str) -> int:
        if not isinstance(s, str):  # click probes for binary streams with write(b"")
            raise TypeError(f"write() argument must be str, not {type(s).__name__}")
        self.inner.write(s if self.passthrough else guard(s))
        return len(s)

    def write_trusted(self, s: str) -> None:
        """Our own constant styling (e.g. the prompt's highlight): never untrusted text."""
        self.inner.write(s)

    def flush(self) -> None:
        self.inner.flush()

    def isatty(self) -> bool:
        return self.inner.isatty()

    def fileno(self) -> int:
        return self.inner.fileno()

    def writable(self) -> bool:
        return True

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return self.inner.encoding

    @property
    def errors(self) -> str | None:  # type: ignore[override]
        return self.inner.errors

    @property
    def buffer(self) -> IO[bytes]:
        return cast(IO[bytes], self.inner.buffer)


@contextlib.contextmanager
def guard_streams() -> Iterator[None]:
    """Make ``sys.stdout`` and ``sys.stderr`` guarded text streams for the block."""
    out, err = sys.stdout, sys.stderr
    if isinstance(out, TerminalGuard) or out is None or err is None:
        yield
        return
    sys.stdout = cast(TextIO, TerminalGuard(out))
    sys.stderr = cast(TextIO, TerminalGuard(err))
    try:
        yield
    finally:
        with contextlib.suppress(OSError, ValueError):
            sys.stdout.flush()
            sys.stderr.flush()
        sys.stdout, sys.stderr = out, err


@contextlib.contextmanager
def exact_output() -> Iterator[None]:
    """A machine format on stdout: exact to a pipe or file, guarded on a terminal."""
    stream = sys.stdout
    if not isinstance(stream, TerminalGuard) or stream.isatty():
        yield
        return
    stream.passthrough = True
    try:
        yield
    finally:
        stream.passthrough = False


def echo_exact(text: str) -> None:
    """A machine format's text on stdout (``exact_output``; not ``click.echo``, which
    strips some escape sequences from piped text: that would not be exact either)."""
    with exact_output():
        sys.stdout.write(text)
        sys.stdout.flush()


def write_trusted(text: str, err: bool = False) -> None:
    """Write our own styling codes past the guard (to the real stream)."""
    stream = sys.stderr if err else sys.stdout
    if isinstance(stream, TerminalGuard):
        stream.write_trusted(text)
    else:
        stream.write(text)


def show_name(name: str, width: int | None = None) -> str:
    """A host name for a person (``safe_name``); with ``width``, cut in the middle so the
    registrable domain stays visible, the mark of a look-alike name always kept."""
    if name.isascii() and name.isprintable() and "\\" not in name and "xn--" not in name.lower():
        shown = name  # nothing to escape or mark (the common case, at C speed)
    else:
        shown = safe_name(name)
    if width is None or len(shown) <= width:
        return shown
    base = safe(name)
    mark = shown[len(base) :] if not is_plain_name(name) else ""
    return elide_name(base, max(width - len(mark), 24)) + mark


def rule_text(rule: Rule) -> str:
    """``rule.describe()`` made safe, a look-alike host name marked beside it."""
    text = safe(rule.describe())
    if rule.host and not is_plain_name(rule.host):
        text += safe_name(rule.host)[len(safe(rule.host)) :]
    return text
