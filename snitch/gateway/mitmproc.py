"""The gateway's mitmproxy worker process (mitmworker.py): started with its end of a
socketpair, handed ``Start``, watched, and stopped.

Fail closed both ways: if the worker dies, nothing listens on the proxy port and the
connections redirected there are refused; the gateway is told (``on_exit``: it logs an
event line and reports ``mitm: false``). If the gateway dies, the channel closes and
the worker exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import sys
from collections.abc import Callable

from snitch.core.settings import SETTINGS_ENV
from snitch.gateway.mitmchannel import Channel
from snitch.gateway.mitmserve import MitmServer
from snitch.gateway.mitmwire import Start

log = logging.getLogger(__name__)
WORKER_MODULE = "snitch.gateway.mitmworker"


class WorkerFailed(RuntimeError):
    """The worker exited before it listened."""


class MitmProcess:
    def __init__(self, server: MitmServer, on_exit: Callable[[int], None]) -> None:
        self.server = server
        self.on_exit = on_exit  # the worker exited by itself (its exit code)
        self.channel = Channel(server.on_message, server.close)
        server.channel = self.channel
        self.process: asyncio.subprocess.Process | None = None
        self.watcher: asyncio.Task[None] | None = None
        self.stopping = False

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    async def start(self, start: Start) -> None:
        ours, theirs = socket.socketpair()
        # Its environment without the gateway's settings: it needs none of them.
        env = {k: v for k, v in os.environ.items() if k != SETTINGS_ENV}
        try:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", WORKER_MODULE, str(theirs.fileno()),
                pass_fds=(theirs.fileno(),), env=env, stdin=asyncio.subprocess.DEVNULL,
            )  # fmt: skip
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        await self.channel.open(ours)
        self.channel.send(start)
        self.watcher = asyncio.get_running_loop().create_task(self.watch(self.process))

    async def listening(self, timeout: float = 30.0) -> None:
        """Wait until mitmproxy listens; WorkerFailed if the worker exits first."""
        ready = asyncio.get_running_loop().create_task(self.server.ready.wait())
        watched = {ready} if self.watcher is None else {ready, self.watcher}
        try:
            await asyncio.wait(watched, timeout=timeout,
                               return_when=asyncio.FIRST_COMPLETED)  # fmt: skip
        finally:
            ready.cancel()
        if not self.server.ready.is_set():
            code = self.process.returncode if self.process is not None else None
            raise WorkerFailed(f"mitmproxy worker not listening (exit code {code})")

    async def watch(self, process: asyncio.subprocess.Process) -> None:
        code = await process.wait()
        self.channel.close()
        if not self.stopping:
            log.warning("mitmproxy worker exited (code %s)", code)
            self.on_exit(code)

    def stop(self) -> None:
        """At once: the channel closes (the worker exits on its own) and it is killed."""
        self.stopping = True
        self.channel.close()
        if self.process is not None and self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
