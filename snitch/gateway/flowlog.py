"""The session's traffic log: one JSON object a line in ``flows.jsonl``.

Writes are buffered and flushed by a timer, so logging costs the packet path only a
``list.append`` (and a token bucket's arithmetic). The file is private (0600) and
chowned to the host user who owns the session. What the log takes is limited
(``snitch/core/loglimit.py``): lines over a kind's rate or the session's size cap are
dropped, counted, and said in a "log limit" line every few seconds and at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from snitch.core.grammar import Topic
from snitch.core.loglimit import LogLimiter, LogLimits

FLUSH_SECONDS = 0.1
SUMMARY_SECONDS = 5.0  # how often a "dropped" summary is written while lines are dropped


def _line_encoder() -> Callable[[dict[str, Any]], str]:
    """``json.dumps(d, separators=(",", ":"))``, with the C encoder behind it made once:
    json.dumps builds a new one for every call, which costs more than the encoding."""
    plain = json.JSONEncoder(separators=(",", ":"))
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:  # no C accelerator in this Python
        return plain.encode
    iterencode = make(None, plain.default, json.encoder.encode_basestring_ascii, None,
                      ":", ",", False, False, True)  # fmt: skip
    return lambda payload: "".join(iterencode(payload, 0))


_ENCODE = _line_encoder()


class LogWriter:
    """Appends log lines with ``os.write`` and keeps exactly the bytes the file did not
    take (a disk that fills up mid-batch loses nothing and duplicates nothing)."""

    def __init__(
        self,
        path: Path,
        uid: int | None = None,
        gid: int | None = None,
        limits: LogLimits | None = None,
        session: str = "",
    ) -> None:
        self.path = path
        self.session = session
        self._buffer: list[str] = []
        self._pending = b""  # encoded but not yet written
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        if uid is not None and gid is not None:
            with contextlib.suppress(OSError):
                os.chown(path, uid, gid)
        self.limiter = LogLimiter(limits or LogLimits(), os.fstat(self._fd).st_size)
        self._task: asyncio.Task[None] | None = None
        self.written = 0

    def set_limits(self, limits: LogLimits) -> None:
        """This run's limits (a warm gateway gets them with its claim)."""
        self.limiter.limits = limits

    @property
    def dropped(self) -> int:
        return self.limiter.dropped

    def on_event(self, topic: Topic, payload: dict[str, Any]) -> None:
        if topic == Topic.LOG:
            line = _ENCODE(payload)
            if self.limiter.admit(payload, len(line) + 1):  # ASCII: one byte a character
                self._buffer.append(line)

    def summarize(self, final: bool = False) -> None:
        """Append a "log limit" line if lines were dropped since the last one."""
        line = self.limiter.summary(self.session, final)
        if line is not None:
            encoded = _ENCODE(line)
            self.limiter.size += len(encoded) + 1
            self._buffer.append(encoded)

    def flush(self) -> None:
        if self._buffer:
            lines, self._buffer = self._buffer, []
            self._pending += ("\n".join(lines) + "\n").encode()
        data = self._pending
        try:
            while data:
                n = os.write(self._fd, data)
                self.written += data.count(b"\n", 0, n)
                data = data[n:]
        except OSError:
            pass  # disk full or gone: the rest waits for the next tick
        self._pending = data

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        next_summary = loop.time() + SUMMARY_SECONDS
        while True:
            await asyncio.sleep(FLUSH_SECONDS)
            if loop.time() >= next_summary:
                next_summary = loop.time() + SUMMARY_SECONDS
                self.summarize()
            self.flush()

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        self.summarize(final=True)
        self.flush()
        os.close(self._fd)
