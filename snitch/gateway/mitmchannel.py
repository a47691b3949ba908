"""One end of the gateway <-> mitmproxy worker channel (a socketpair; mitmwire.py):
framed messages out, a reader task in. Asks wait for the answer with their ``id``;
anything else goes to ``on_message``. When the other end goes (EOF, a bad frame), every
ask still waiting fails with ``ChannelClosed`` and ``on_closed`` runs once."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import socket
from collections.abc import Callable
from typing import TypeVar

from snitch.gateway.mitmwire import ANSWERS, HEADER, MAX_MESSAGE, Message, WireError, decode, encode

log = logging.getLogger(__name__)
A = TypeVar("A", bound=Message)


class ChannelClosed(ConnectionError):
    """The other end of the channel is gone."""


class Channel:
    def __init__(self, on_message: Callable[[Message], None],
                 on_closed: Callable[[], None] | None = None) -> None:  # fmt: skip
        self.on_message = on_message
        self.on_closed = on_closed
        self.ids = itertools.count(1)
        self.waiting: dict[int, asyncio.Future[Message]] = {}
        self.writer: asyncio.StreamWriter | None = None
        self.task: asyncio.Task[None] | None = None
        self.closed = False

    async def open(self, sock: socket.socket) -> None:
        """Use ``sock`` (this process's end) and start reading."""
        reader, self.writer = await asyncio.open_connection(sock=sock, limit=MAX_MESSAGE)
        self.task = asyncio.get_running_loop().create_task(self.read(reader))

    def next_id(self) -> int:
        return next(self.ids)

    def send(self, message: Message) -> None:
        if self.closed or self.writer is None:
            raise ChannelClosed("the channel is closed")
        self.writer.write(encode(message))

    async def ask(self, message: Message, answer: type[A]) -> A:
        """Send ``message`` (its ``id`` from ``next_id``) and wait for its answer."""
        key: int = getattr(message, "id")  # noqa: B009 - every ask has one
        future: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self.waiting[key] = future
        try:
            self.send(message)
            got = await future
        finally:
            self.waiting.pop(key, None)
        if not isinstance(got, answer):
            raise WireError(f"asked {message.KIND}, answered {got.KIND}")
        return got

    async def read(self, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                size = HEADER.unpack(await reader.readexactly(HEADER.size))[0]
                if size > MAX_MESSAGE:
                    raise WireError(f"a message of {size} bytes")
                message = decode(await reader.readexactly(size))
                if message.KIND in ANSWERS:
                    future = self.waiting.get(getattr(message, "id"))  # noqa: B009
                    if future is not None and not future.done():
                        future.set_result(message)
                    continue
                self.on_message(message)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the other end is gone
        except WireError as exc:
            log.warning("mitmproxy worker channel: %s", exc)
        finally:
            self.close()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for future in self.waiting.values():
            if not future.done():
                future.set_exception(ChannelClosed("the channel closed"))
        self.waiting.clear()
        if self.writer is not None:
            with contextlib.suppress(Exception):
                self.writer.close()
        if self.task is not None and self.task is not asyncio.current_task():
            self.task.cancel()
        if self.on_closed is not None:
            self.on_closed()
