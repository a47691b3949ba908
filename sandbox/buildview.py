"""How image builds look on the terminal: one line per image, not Docker's raw output.

On a terminal each image gets one line, rewritten in place while it builds: a spinner,
the image, the step Docker is on and the time so far; when it is done the line says so
and how long it took. Without a terminal (a log, CI) each image prints one line when it
is done. ``verbose`` shows every line of the build as well. A failed build raises with
the last lines of its output, whatever the view.

Everything taken from a build's output goes through ``safetext.safe`` before it is
shown; only our own cursor codes (carriage return, erase line) go to the terminal raw.
"""

from __future__ import annotations

import collections
import re
import shutil
import sys
import threading
import time
from typing import TextIO

from sandbox.textout import TerminalGuard
from snitch.core.safetext import safe

SPINNER = "|/-\\"
TICK_SECONDS = 0.2
TAIL_LINES = 30  # kept to explain a failed build
ERASE_LINE = "\r\x1b[K"
_STEP = re.compile(r"^Step (\d+)/(\d+) : (.*)$")


def _stderr() -> TextIO:
    return sys.stderr


def _write_raw(stream: TextIO, text: str) -> None:
    """Our own cursor codes, past the terminal guard of the CLI (sandbox/textout.py)."""
    if isinstance(stream, TerminalGuard):
        stream.write_trusted(text)
    else:
        stream.write(text)
    stream.flush()


class BuildView:
    """Shows the builds of one ``images.build`` call."""

    def __init__(
        self, stream: TextIO | None = None, verbose: bool = False, live: bool | None = None
    ) -> None:
        self.stream = stream if stream is not None else _stderr()
        self.verbose = verbose
        self.live = (self.stream.isatty() and not verbose) if live is None else live
        self.name = ""
        self.tag = ""
        self.step = ""
        self.started = 0.0
        self.frame = 0
        self.tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None

    # -- what images.build calls --------------------------------------------------------

    def message(self, text: str) -> None:
        """A line about the build as a whole (the base image, the wheels)."""
        with self._lock:
            if self.live and self.name:
                _write_raw(self.stream, ERASE_LINE)
            self.stream.write(safe(text) + "\n")
            self.stream.flush()
            if self.live and self.name:
                self._draw()

    def start(self, name: str, tag: str) -> None:
        self.name, self.tag, self.step = name, tag, "starting"
        self.started = time.monotonic()
        self.tail.clear()
        if self.verbose:
            self.message(f"building {tag} ...")
        if self.live:
            with self._lock:
                self._draw()
            self._stop.clear()
            self._ticker = threading.Thread(target=self._tick, name="build-view", daemon=True)
            self._ticker.start()

    def output(self, text: str) -> None:
        """Docker's build output (any number of lines)."""
        for line in text.splitlines():
            line = line.rstrip()
            if not line:
                continue
            self.tail.append(line)
            found = _STEP.match(line)
            with self._lock:
                if found:
                    self.step = f"step {found[1]}/{found[2]}: {found[3]}"
                if self.verbose:
                    self.stream.write("  " + safe(line) + "\n")
                    self.stream.flush()
                elif self.live:
                    self._draw()

    def finish(self, ok: bool) -> None:
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join()
            self._ticker = None
        elapsed = time.monotonic() - self.started
        word = "built" if ok else "FAILED"
        line = f"{self.name:15} {word} {self.tag} in {elapsed:.1f}s"
        with self._lock:
            if self.live:
                _write_raw(self.stream, ERASE_LINE)
            self.stream.write(safe(line) + "\n")
            self.stream.flush()
        self.name = ""

    def failure_tail(self) -> str:
        return "\n".join(safe(line) for line in self.tail)

    # -- the live line ------------------------------------------------------------------

    def _tick(self) -> None:
        while not self._stop.wait(TICK_SECONDS):
            with self._lock:
                self._draw()

    def _draw(self) -> None:
        """Rewrite the image's line (the lock is held)."""
        self.frame = (self.frame + 1) % len(SPINNER)
        elapsed = time.monotonic() - self.started
        head = f"{SPINNER[self.frame]} {self.name:15} {elapsed:6.1f}s  "
        width = shutil.get_terminal_size((80, 24)).columns - 1
        text = (head + safe(self.step))[: max(width, 20)]
        _write_raw(self.stream, ERASE_LINE + text)
