"""``coderun run -i`` / ``-it``: the sandbox gets this terminal (or at least its stdin).

With ``-t`` the sandbox runs on a pseudo-terminal of its own: this terminal goes raw,
keys (Ctrl-C as well) go to the sandboxed program, its screen size follows this one
(SIGWINCH). Its output reaches this terminal as an interactive program's must, through
``safetext.TerminalFilter`` (no title, clipboard or passthrough sequences). With ``-i``
alone stdin is piped and its end is passed on; Ctrl-C is sent to the sandbox's process
(three within two seconds stop the run).

Ask-mode questions cannot share this terminal: they go to ``coderun dashboard`` in
another one. The run says how to attach, rings the bell when something waits and, inside
tmux, can open the dashboard in a split beside.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import shlex
import signal
import socket
import subprocess
import sys
import termios
import threading
import time
import tty
from collections.abc import Iterator
from types import FrameType
from typing import Any

from docker.utils.socket import STDERR, frames_iter

from sandbox import paths
from sandbox.session import Session
from snitch.core.model import Mode
from snitch.core.safetext import TerminalFilter, safe

BELL_INTERVAL = 2.0  # at most one bell this often
STOP_WINDOW = 2.0  # -i without -t: three Ctrl-C within it stop the run
ATTACH_PARAMS = {"stdin": 1, "stdout": 1, "stderr": 1, "stream": 1, "logs": 1}


def _raw_socket(sock: Any) -> socket.socket:
    inner = getattr(sock, "_sock", sock)
    assert isinstance(inner, socket.socket)
    return inner


def chunks(sock: Any, tty: bool) -> Iterator[tuple[bytes | None, bytes | None]]:
    """The attached sandbox's output as (stdout, stderr) pairs, as runner._pump reads."""
    for stream, data in frames_iter(sock, tty):
        yield (None, data) if stream == STDERR else (data, None)


def in_tmux() -> bool:
    return bool(os.environ.get("TMUX")) and subprocess.run(
        ["tmux", "display-message", "-p", "ok"], capture_output=True, check=False
    ).returncode == 0


class TerminalFront:
    """A Front (sandbox/runner.py) that gives the sandbox this terminal."""

    def __init__(self, tty_mode: bool, split: bool | None = None) -> None:
        self.tty = tty_mode
        self.split = split  # None: ask (inside tmux, ask mode)
        self.done = threading.Event()
        self.sock: socket.socket | None = None
        self.session: Session | None = None
        self.filter = TerminalFilter()
        self.out_fd = sys.stdout.fileno()
        self.err_fd = sys.stderr.fileno()
        self.pane: str | None = None  # a tmux pane we opened
        self._write_lock = threading.Lock()
        self._bell_thread: threading.Thread | None = None
        self._last_bell = 0.0
        self._interrupts: list[float] = []
        self._wake_r, self._wake_w = os.pipe()

    # -- before the sandbox starts ---------------------------------------------------------
    def attach(self, session: Session) -> Iterator[tuple[bytes | None, bytes | None]]:
        """Attach to the created sandbox (stdin too); say how ask mode asks."""
        assert session.sandbox is not None
        self.session = session
        raw = session.sandbox.attach_socket(params=ATTACH_PARAMS)
        self.sock = _raw_socket(raw)
        if session.config.run.mode == Mode.ASK:
            self._announce(session)
        return chunks(raw, self.tty)

    def _announce(self, session: Session) -> None:
        self.note(f"session {session.id} asks in ask mode: run `coderun dashboard` in another "
                  "terminal to decide (a bell rings here when something waits)")  # fmt: skip
        if in_tmux():
            if self.split is None and sys.stdin.isatty():
                self.split = _ask_yes("coderun: open the dashboard in a tmux split? [Y/n] ")
            if self.split:
                self.pane = open_dashboard_pane()
        self._bell_thread = threading.Thread(target=self._bells, args=(session,), daemon=True)
        self._bell_thread.start()

    def note(self, text: str) -> None:
        """One line of coderun's own, on stderr (before and after the sandbox's turn)."""
        self._write(self.err_fd, f"coderun: {safe(text)}\r\n".encode())

    # -- Front ------------------------------------------------------------------------------
    def output(self, stream: str, data: bytes) -> None:
        shown = self.filter.feed(data) if self.tty else data
        self._write(self.out_fd if stream == "stdout" else self.err_fd, shown)

    def finished(self, status: int, error: str | None) -> None:
        self.done.set()
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"x")

    def run(self, session: Session) -> None:
        assert self.sock is not None
        stdin = sys.stdin.fileno()
        saved = termios.tcgetattr(stdin) if self.tty and os.isatty(stdin) else None
        previous_winch = signal.getsignal(signal.SIGWINCH)
        previous_int = signal.getsignal(signal.SIGINT)
        try:
            if saved is not None:
                tty.setraw(stdin)
                signal.signal(signal.SIGWINCH, lambda _s, _f: self._resize(session))
                self._resize(session)
            elif not self.tty:
                signal.signal(signal.SIGINT, self._forward_interrupt)
            self._pump_stdin(stdin)
        finally:
            if saved is not None:
                termios.tcsetattr(stdin, termios.TCSADRAIN, saved)
            signal.signal(signal.SIGWINCH, previous_winch)
            signal.signal(signal.SIGINT, previous_int)
            self.close_pane()

    def _pump_stdin(self, stdin: int) -> None:
        assert self.sock is not None
        reading = True
        while not self.done.is_set():
            fds = [self._wake_r, stdin] if reading else [self._wake_r]
            try:
                ready, _, _ = select.select(fds, [], [], 0.5)
            except InterruptedError:
                continue
            if stdin not in ready:
                continue
            data = os.read(stdin, 4096)
            try:
                if data:
                    self.sock.sendall(data)
                else:  # end of input: the sandbox's stdin ends too
                    reading = False
                    self.sock.shutdown(socket.SHUT_WR)
            except OSError:
                reading = False

    def _forward_interrupt(self, _signum: int, _frame: FrameType | None) -> None:
        """Ctrl-C goes to the sandbox's process; three within STOP_WINDOW seconds stop
        the run (cleaned up as always), for a program that ignores it."""
        now = time.monotonic()
        self._interrupts = [t for t in self._interrupts if now - t < STOP_WINDOW] + [now]
        if len(self._interrupts) >= 3:
            raise KeyboardInterrupt
        if self.session is not None and self.session.sandbox is not None:
            with contextlib.suppress(Exception):
                self.session.sandbox.kill(signal="SIGINT")

    def _resize(self, session: Session) -> None:
        if session.sandbox is None:
            return
        with contextlib.suppress(OSError, Exception):
            size = os.get_terminal_size(sys.stdin.fileno())
            session.sandbox.resize(height=size.lines, width=size.columns)

    def _write(self, fd: int, data: bytes) -> None:
        with self._write_lock, contextlib.suppress(OSError):
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]

    # -- the bell ---------------------------------------------------------------------------
    def _bells(self, session: Session) -> None:
        with contextlib.suppress(Exception):
            asyncio.run(self._watch_pending(session))

    async def _watch_pending(self, session: Session) -> None:
        from snitch.review.client import ApiError, GatewayClient

        client = GatewayClient(session.api_socket, paths.api_token(), session.id)
        while not self.done.is_set():
            try:
                async for event in client.events():
                    if self.done.is_set():
                        return
                    if event.topic == "pending":
                        self.bell()
            except (ApiError, OSError, ValueError):
                pass
            await asyncio.sleep(0.5)

    def bell(self) -> None:
        now = time.monotonic()
        if now - self._last_bell >= BELL_INTERVAL:
            self._last_bell = now
            self._write(self.err_fd, b"\a")

    # -- tmux -------------------------------------------------------------------------------
    def close_pane(self) -> None:
        if self.pane is not None:
            subprocess.run(["tmux", "kill-pane", "-t", self.pane], capture_output=True,
                           check=False)  # fmt: skip
            self.pane = None


def dashboard_command() -> str:
    """``coderun dashboard`` as this process would run it, with its data dir."""
    env = {k: v for k, v in os.environ.items() if k in ("CODERUN_HOME", "PYTHONPATH", "PATH")}
    words = ["env", *(f"{k}={v}" for k, v in env.items()),
             sys.executable, "-m", "sandbox.cli", "dashboard"]  # fmt: skip
    return shlex.join(words)


def open_dashboard_pane() -> str | None:
    """A tmux split beside this pane running the dashboard; its pane id."""
    proc = subprocess.run(
        ["tmux", "split-window", "-h", "-d", "-P", "-F", "#{pane_id}", dashboard_command()],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    return proc.stdout.strip() or None if proc.returncode == 0 else None


def _ask_yes(question: str) -> bool:
    sys.stderr.write(question)
    sys.stderr.flush()
    ready, _, _ = select.select([sys.stdin], [], [], 30)
    answer = sys.stdin.readline().strip().lower() if ready else "n"
    return answer in ("", "y", "yes")
