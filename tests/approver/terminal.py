"""Run ``coderun`` on a real pseudo-terminal (or a pipe) and check the bytes it wrote.

What a terminal acts on is in the bytes it receives, so the checks look at those: no
ESC, no C0 control but the line ends a pty itself makes, no C1 (as a character or a
raw byte), no DEL, no bidi, zero-width or other invisible format character.
"""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time
import unicodedata
from collections.abc import Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# What a hostile sandbox puts in names, URLs, headers and its output.
OSC_TITLE = "\x1b]0;pwned\x07"  # set the window title
CLEAR = "\x1b[2J\x1b[H"  # clear the screen, cursor home
CLIPBOARD = "\x1b]52;c;cHlwaS50ZXN0\x07"  # OSC 52: write the clipboard
C1_CSI = "\x9b2J"  # a C1 CSI (8-bit) clear screen
BIDI = "\u202e"  # right-to-left override
ZERO_WIDTH = "\u200b"
CYRILLIC_NAME = "p\u0430ypal.example.test"  # a Cyrillic а
PUNY_NAME = "xn--pypal-4ve.example.test"  # the same name in its ASCII form
FORGED = "12:00:00 allow  tcp  pypi.test"  # a log line a name tries to forge


def coderun(*args: str) -> list[str]:
    return [sys.executable, "-m", "sandbox.cli", *args]


def cli_env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CODERUN_")}
    env.update(CODERUN_HOME=str(home), TERM="xterm-256color", COLUMNS="200", **extra)
    env.pop("NO_COLOR", None)
    return env


def run_on_terminal(
    args: list[str], env: Mapping[str, str], timeout: float = 60.0
) -> tuple[int, bytes]:
    """Run ``args`` with stdin, stdout and stderr on a new pty; (status, bytes shown)."""
    master, slave = os.openpty()
    proc = subprocess.Popen(args, stdin=slave, stdout=slave, stderr=slave, env=dict(env),
                            cwd=ROOT, start_new_session=True)  # fmt: skip
    os.close(slave)
    out = bytearray()
    deadline = time.monotonic() + timeout
    try:
        while True:
            assert time.monotonic() < deadline, f"{args} did not end: {bytes(out)!r}"
            ready, _, _ = select.select([master], [], [], 0.1)
            if not ready:
                continue
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: every holder of the slave side has closed it
                break
            if not chunk:
                break
            out += chunk
        return proc.wait(timeout=max(1.0, deadline - time.monotonic())), bytes(out)
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def run_piped(args: list[str], env: Mapping[str, str]) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(args, capture_output=True, env=dict(env), cwd=ROOT, timeout=60,
                          stdin=subprocess.DEVNULL)  # fmt: skip


def _bad(ch: str) -> bool:
    code = ord(ch)
    if ch in "\n\t":
        return False
    if code < 0x20 or 0x7F <= code <= 0x9F:
        return True
    if code < 0x7F:
        return False
    cat = unicodedata.category(ch)
    return cat in ("Cf", "Cs", "Co", "Cn", "Zl", "Zp") or (cat == "Zs" and ch != " ")


def terminal_problems(data: bytes, allowed: tuple[bytes, ...] = ()) -> list[str]:
    """What in ``data`` a terminal would act on or hide (``allowed``: our own styling)."""
    for seq in allowed:
        data = data.replace(seq, b"")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:  # a raw 8-bit C1 byte, for one
        return [f"not UTF-8: {exc}"]
    text = text.replace("\r\n", "\n")  # a pty turns \n into \r\n; a lone \r overwrites
    return sorted({f"U+{ord(c):04X}" for c in text if _bad(c)})


def assert_inert(data: bytes, allowed: tuple[bytes, ...] = ()) -> None:
    problems = terminal_problems(data, allowed)
    assert not problems, f"raw control/invisible characters {problems} in {data!r}"


class Terminal:
    """A process on a pty of ``cols`` x ``rows``, read by a thread into a terminal
    emulator (pyte): the bytes it wrote, what the screen shows, keys to type."""

    def __init__(
        self, args: list[str], env: Mapping[str, str], cols: int = 200, rows: int = 50
    ) -> None:
        import fcntl
        import struct
        import termios
        import threading

        import pyte  # type: ignore[import-untyped]

        master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        self.proc = subprocess.Popen(args, stdin=slave, stdout=slave, stderr=slave,
                                     env=dict(env), cwd=ROOT, start_new_session=True)  # fmt: skip
        os.close(slave)
        self.master = master
        self.data = bytearray()
        self.screen = pyte.Screen(cols, rows)
        self._stream = pyte.ByteStream(self.screen)
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                chunk = os.read(self.master, 65536)
            except OSError:
                return
            if not chunk:
                return
            with self._lock:
                self.data += chunk
                self._stream.feed(chunk)

    def shown(self) -> bytes:
        with self._lock:
            return bytes(self.data)

    def screen_lines(self) -> list[str]:
        with self._lock:
            return [line.rstrip() for line in self.screen.display]

    def cursor_line(self) -> str:
        with self._lock:
            return str(self.screen.display[self.screen.cursor.y]).rstrip()

    def wait_for(self, needle: bytes, timeout: float = 60.0, count: int = 1) -> int:
        """Wait until ``needle`` has been written ``count`` times; its last position."""
        deadline = time.monotonic() + timeout
        while True:
            data = self.shown()
            if data.count(needle) >= count:
                return data.rfind(needle)
            if self.proc.poll() is not None:  # it ended: read what is left, then decide
                self._reader.join(timeout=5)
                if self.shown().count(needle) >= count:
                    continue
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise AssertionError(f"no {needle!r} (x{count}) on the terminal: {data!r}")
            time.sleep(0.05)

    def type(self, text: str) -> None:
        os.write(self.master, text.encode())

    def wait(self, timeout: float) -> int:
        status = self.proc.wait(timeout=timeout)
        self._reader.join(timeout=5)
        return status

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._reader.join(timeout=5)
        os.close(self.master)
