"""The sandboxed command's stdout/stderr, and its exit status once it ends.

What the command prints is hostile: it is shown as inert text (``tui.inert.output_line``:
colours kept, every other escape sequence shown escaped), so it cannot move the cursor
out of the pane, retitle the terminal or write the clipboard.
"""

from __future__ import annotations

from rich.text import Text
from textual.timer import Timer
from textual.widgets import RichLog

from tui.inert import output_line

FLUSH_AFTER = 0.3
"""Seconds before an unterminated line (a prompt, a progress bar) is shown anyway."""
MAX_PARTIAL = 4096
"""Characters of an unterminated line held back at most (a line without end is shown in
pieces, not gathered forever)."""


class OutputPane(RichLog):
    """Complete lines are written as they come; a partial line after a short pause."""

    def __init__(self, id: str | None = None) -> None:
        super().__init__(max_lines=5000, wrap=True, markup=False, highlight=False, id=id)
        self.border_title = "output"
        self.exit_code: str | None = None
        self._partial: dict[str, str] = {}
        self._flush_timer: Timer | None = None

    def add_chunk(self, stream: str, text: str) -> None:
        if stream == "exit":
            self.finish(text)
            return
        other = "stderr" if stream == "stdout" else "stdout"
        self._flush(other)  # keep the interleaving of the two streams
        *lines, rest = (self._partial.pop(stream, "") + text).split("\n")
        for line in lines:
            self._write(stream, line)
        while len(rest) > MAX_PARTIAL:
            self._write(stream, rest[:MAX_PARTIAL])
            rest = rest[MAX_PARTIAL:]
        if rest:
            self._partial[stream] = rest
            if self._flush_timer is None:  # not pushed back by every chunk
                self._flush_timer = self.set_timer(FLUSH_AFTER, self._flush_all)

    def finish(self, code: str) -> None:
        self._flush_all()
        self.exit_code = code
        ok = code == "0"
        style = "bold green" if ok else "bold red"
        self.write(Text(f"── exited with status {code} ──", style=style))
        self.border_title = f"output · exit {code}"
        self.set_class(not ok, "-failed")
        self.set_class(ok, "-done")

    def _flush_all(self) -> None:
        if self._flush_timer is not None:
            self._flush_timer.stop()
            self._flush_timer = None
        for stream in list(self._partial):
            self._flush(stream)

    def _flush(self, stream: str) -> None:
        rest = self._partial.pop(stream, "")
        if rest:
            self._write(stream, rest)

    def _write(self, stream: str, line: str) -> None:
        if line.endswith("\r"):
            line = line[:-1]  # a CRLF line end; any other carriage return shows escaped
        self.write(output_line(line, style="red" if stream == "stderr" else ""))
