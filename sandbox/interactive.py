"""Ask-mode fronts: the Textual dashboard, or a plain line prompt on the terminal
(sandbox/line_prompt.py)."""

from __future__ import annotations

import asyncio
import queue
from collections.abc import AsyncIterator, Callable

import docker

from sandbox import paths
from sandbox.config import SessionConfig
from sandbox.line_prompt import LinePrompt
from sandbox.runner import run_session
from sandbox.session import Session
from snitch.review.client import GatewayClient


class DashboardFront:
    """The Textual dashboard in this terminal, with the command's output in a pane."""

    def __init__(self, keymap: dict[str, str] | None = None) -> None:
        self.chunks: queue.Queue[tuple[str, str]] = queue.Queue()
        self.keymap = keymap or {}

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
        # Start-up time: Textual loads only for the dashboard front.
        from tui.app import DashboardApp

        client = GatewayClient(session.api_socket, paths.api_token(), session.id)
        command = " ".join(session.config.run.command) or str(session.config.script or "")
        app = DashboardApp([client], output=self._output(), title=f"coderun — {command}",
                           keymap=self.keymap)  # fmt: skip
        app.run()


def run_interactive(
    client: docker.DockerClient,
    config: SessionConfig,
    prompt: str,
    started: Callable[[Session], None] | None = None,
    keymap: dict[str, str] | None = None,
) -> int:
    front = LinePrompt() if prompt == "line" else DashboardFront(keymap)
    return run_session(client, config, front, started=started)
