"""Ask the host which sandbox process made a flow (the gateway's side of attribution).

The host's service listens on ``attribution.sock`` in the session folder (the gateway
cannot see the sandbox's processes; the host can). ``start(key)`` sends the question at
once and returns a future; the flow gate never waits for it, except when an ``exe``
rule could decide the flow (``wait``, up to ``deadline``). Answers are kept per 5-tuple
for a while (a flow's log line and its pending item ask the same question).

No service (a run without one, or one not up yet), a broken connection or a late
answer all mean the same: the process is unknown (None).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from snitch.core.model import FlowKey, Proto
from snitch.core.process import Lookup, ProcessInfo

log = logging.getLogger(__name__)
DEADLINE = 0.2  # seconds at most a flow an exe rule could decide waits for its process
LOG_DEADLINE = 0.5  # seconds a decided flow's log line waits for its process
RECONNECT_SECONDS = 0.1  # how often a missing service is looked for
ANSWER_SECONDS = 10.0
KEPT = 4096  # answers kept (by 5-tuple); the oldest are forgotten first
ATTRIBUTED = (Proto.TCP, Proto.UDP)


class Attributor:
    def __init__(self, socket_path: Path, deadline: float = DEADLINE) -> None:
        self.path = socket_path
        self.deadline = deadline
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[ProcessInfo | None]] = {}
        # by 5-tuple: (when asked, the answer); a new flow on a 5-tuple asked more than
        # ANSWER_SECONDS ago (a port reused) asks again
        self._answers: OrderedDict[FlowKey, tuple[float, asyncio.Future[ProcessInfo | None]]]
        self._answers = OrderedDict()
        self._writer: asyncio.StreamWriter | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        # log lines waiting for their process: token -> (line, publish)
        self._unpublished: dict[int, tuple[dict[str, Any], Callable[[dict[str, Any]], None]]] = {}
        self.asked = 0
        self.found = 0

    def start(self, key: FlowKey) -> asyncio.Future[ProcessInfo | None]:
        """The (future) process of flow ``key``: asked once, then remembered."""
        now = time.monotonic()
        known = self._answers.get(key)
        if known is not None and known[0] > now - ANSWER_SECONDS:
            return known[1]
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[ProcessInfo | None] = loop.create_future()
        self._answers[key] = (now, fut)
        self._answers.move_to_end(key)
        if len(self._answers) > KEPT:
            self._answers.popitem(last=False)
        if key.proto not in ATTRIBUTED:
            fut.set_result(None)
            return fut
        self.asked += 1
        if len(self._waiting) >= KEPT:  # the service is stuck: the oldest are unknown
            self._resolve(next(iter(self._waiting)), None)
        q = Lookup(next(self._ids), str(key.proto), key.src, key.sport, key.dst, key.dport)
        self._waiting[q.id] = fut
        line = json.dumps(q.to_dict()).encode() + b"\n"
        if self._writer is not None and not self._writer.is_closing():
            self._writer.write(line)
        else:
            self._resolve(q.id, None)  # no service (yet): unknown
        return fut

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def publish_with_process(
        self, key: FlowKey, line: dict[str, Any], publish: Callable[[dict[str, Any]], None]
    ) -> None:
        """Publish a flow's log ``line`` with its process: at once when known (or never
        asked), else when the answer comes, at the latest after ``LOG_DEADLINE`` (then
        unknown); ``close`` publishes what still waits (nothing is lost)."""
        fut = self.known(key)
        if fut is None or fut.done():
            found = fut.result() if fut is not None else None
            if found is not None:
                line.update(found.log_fields())
            publish(line)
            return
        token = next(self._ids)
        self._unpublished[token] = (line, publish)

        async def later() -> None:
            found = await self.wait(key, LOG_DEADLINE)
            waiting = self._unpublished.pop(token, None)
            if waiting is not None:
                if found is not None:
                    line.update(found.log_fields())
                publish(line)

        self._spawn(later())

    def known(self, key: FlowKey) -> asyncio.Future[ProcessInfo | None] | None:
        """The answer for ``key`` asked last (done or on its way), if any."""
        known = self._answers.get(key)
        return known[1] if known is not None else None

    async def wait(self, key: FlowKey, timeout: float | None = None) -> ProcessInfo | None:
        """The process of ``key`` if known within ``timeout`` (default: the deadline)."""
        fut = self.start(key)
        if fut.done():
            return fut.result()
        try:
            return await asyncio.wait_for(asyncio.shield(fut), self.deadline if timeout is None
                                          else timeout)  # fmt: skip
        except TimeoutError:
            return None

    def run(self) -> None:
        """Connect to the service, and again whenever the connection ends (the service
        starts with the sandbox, after the gateway; it may never exist)."""
        self._spawn(self._keep_connected())

    async def _keep_connected(self) -> None:
        while True:
            if self._writer is None:
                try:
                    reader, self._writer = await asyncio.open_unix_connection(str(self.path))
                except OSError:
                    await asyncio.sleep(RECONNECT_SECONDS)
                    continue
                await self._read(reader)  # until the connection ends
            await asyncio.sleep(RECONNECT_SECONDS)

    async def _read(self, reader: asyncio.StreamReader) -> None:
        try:
            while line := await reader.readline():
                try:
                    answer = json.loads(line)
                except ValueError:
                    continue
                if isinstance(answer, dict) and isinstance(answer.get("id"), int):
                    self._resolve(answer["id"], ProcessInfo.from_dict(answer))
        except (OSError, asyncio.IncompleteReadError) as exc:
            log.debug("attribution service: %s", exc)
        finally:
            if self._writer is not None:
                self._writer.close()
            self._writer = None
            self._fail_all()

    def _resolve(self, qid: int, found: ProcessInfo | None) -> None:
        fut = self._waiting.pop(qid, None)
        if fut is not None and not fut.done():
            if found is not None:
                self.found += 1
            fut.set_result(found)

    def _fail_all(self) -> None:
        for qid in list(self._waiting):
            self._resolve(qid, None)

    def close(self) -> None:
        """Publish the log lines still waiting (their process unknown), stop asking."""
        unpublished, self._unpublished = self._unpublished, {}
        for line, publish in unpublished.values():
            publish(line)
        if self._writer is not None:
            self._writer.close()
        for task in list(self._tasks):
            task.cancel()
        with contextlib.suppress(Exception):
            self._fail_all()
