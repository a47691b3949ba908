"""The person's answers on stdin, line by line, for the terminal prompts (--prompt line):
read by a daemon thread that polls, each line stamped with when it was read."""

from __future__ import annotations

import contextlib
import os
import select
import sys
import termios
import threading
import time
from collections.abc import Callable

Line = tuple[float, str] | None  # (time.monotonic() it was read, text); None: end of input


class StdinLines(threading.Thread):
    """Reads lines from a file descriptor and posts them to the loop; a daemon that
    polls, so it never keeps the process (or the prompt) waiting on input."""

    def __init__(self, fd: int, post: Callable[[Line], None], stop: threading.Event) -> None:
        super().__init__(name="coderun-prompt-input", daemon=True)
        self.fd, self.post, self.stop = fd, post, stop

    def run(self) -> None:
        pending = b""
        while not self.stop.is_set():
            try:
                ready, _, _ = select.select([self.fd], [], [], 0.2)
                chunk = os.read(self.fd, 4096) if ready else None
            except (OSError, ValueError):
                chunk = b""
            if chunk is None:
                continue
            if not chunk:
                self.post(None)
                return
            pending += chunk
            while b"\n" in pending:
                line, _, pending = pending.partition(b"\n")
                self.post((time.monotonic(), line.decode(errors="replace")))
            pending = pending[-4096:]


def stdin_fd() -> int | None:
    try:
        return sys.stdin.fileno() if sys.stdin is not None else None
    except (OSError, ValueError):
        return None


def flush_typeahead() -> None:
    """Drop what was typed on the terminal but not yet entered: it was not an answer to
    the question about to be shown."""
    fd = stdin_fd()
    if fd is not None and os.isatty(fd):
        with contextlib.suppress(termios.error, OSError):
            termios.tcflush(fd, termios.TCIFLUSH)
