"""Ask-mode fronts: the Textual dashboard, or a plain line prompt on the terminal."""

from __future__ import annotations

import asyncio
import contextlib
import queue
import sys
import threading
from collections.abc import AsyncIterator

import docker

from sandbox import paths
from sandbox.runner import run_session
from sandbox.session import Session, SessionConfig
from snitch.client import ApiError, GatewayClient
from snitch.model import Action, DecisionRequest, Pending, Target

ANSWERS = {
    "a": (Action.ALLOW, "once"),
    "A": (Action.ALLOW, "always"),
    "d": (Action.DENY, "once"),
    "D": (Action.DENY, "always"),
}


def prompt_text(item: Pending) -> str:
    where = f"{item.dst}:{item.dport}/{item.proto}" if item.proto != "icmp" else f"{item.dst}/icmp"
    return (f"Allow connection to {item.label} ({where})? "
            "[a]llow once / [A]lways / [d]eny / [D]eny always ")  # fmt: skip


class LinePrompt:
    """Asks about one pending item at a time on stdin/stdout; others keep waiting."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self._print_lock = threading.Lock()

    def output(self, stream: str, data: bytes) -> None:
        target = sys.stdout.buffer if stream == "stdout" else sys.stderr.buffer
        with self._print_lock:
            target.write(data)
            target.flush()

    def finished(self, status: int, error: str | None) -> None:
        self.done.set()

    def run(self, session: Session) -> None:
        asyncio.run(self._main(session))

    async def _main(self, session: Session) -> None:
        client = GatewayClient(session.api_socket, paths.api_token(), session.id)
        waiting: asyncio.Queue[Pending] = asyncio.Queue()
        gone: set[str] = set()
        listener = asyncio.create_task(self._listen(client, waiting, gone))
        asker = asyncio.create_task(self._ask(client, waiting, gone))
        try:
            while not self.done.is_set():
                await asyncio.sleep(0.2)
        finally:
            for task in (listener, asker):
                task.cancel()
            for task in (listener, asker):
                with contextlib.suppress(asyncio.CancelledError, ApiError, OSError):
                    await task

    async def _listen(self, client: GatewayClient, waiting: asyncio.Queue[Pending],
                      gone: set[str]) -> None:  # fmt: skip
        async for event in client.events():
            if event.topic == "pending":
                await waiting.put(Pending.from_dict(event.data))
            elif event.topic in ("decided", "expired"):
                gone.add(str(event.data["id"]))

    async def _ask(self, client: GatewayClient, waiting: asyncio.Queue[Pending],
                   gone: set[str]) -> None:  # fmt: skip
        while True:
            item = await waiting.get()
            while item.id not in gone:
                with self._print_lock:
                    sys.stdout.write(prompt_text(item))
                    sys.stdout.flush()
                line = await asyncio.to_thread(sys.stdin.readline)
                if not line:
                    return  # stdin closed: leave the rest to the deadline
                answer = ANSWERS.get(line.strip())
                if answer is None:
                    continue
                action, lifetime = answer
                request = DecisionRequest(action, pending_id=item.id, target=Target.HOST,
                                          lifetime=lifetime)  # fmt: skip
                try:
                    await client.decide(request)
                except ApiError as exc:
                    if exc.status != 409:
                        raise
                    print("(already decided elsewhere)")
                break


class DashboardFront:
    """The Textual dashboard in this terminal, with the command's output in a pane."""

    def __init__(self) -> None:
        self.chunks: queue.Queue[tuple[str, str]] = queue.Queue()

    def output(self, stream: str, data: bytes) -> None:
        self.chunks.put((stream, data.decode(errors="replace")))

    def finished(self, status: int, error: str | None) -> None:
        if error:
            self.chunks.put(("stderr", f"coderun: {error}\n"))
        self.chunks.put(("exit", str(status)))

    async def _output(self) -> AsyncIterator[tuple[str, str]]:
        while True:
            try:
                item = await asyncio.to_thread(self.chunks.get, True, 0.2)
            except queue.Empty:
                continue
            yield item
            if item[0] == "exit":
                return

    def run(self, session: Session) -> None:
        from tui.app import DashboardApp

        client = GatewayClient(session.api_socket, paths.api_token(), session.id)
        command = " ".join(session.config.command) or str(session.config.script or "")
        app = DashboardApp([client], output=self._output(), title=f"coderun — {command}")
        app.run()


def run_interactive(client: docker.DockerClient, config: SessionConfig, prompt: str) -> int:
    front = LinePrompt() if prompt == "line" else DashboardFront()
    return run_session(client, config, front)
