"""What the flood tests share (test_kernel_cache_flood.py, test_glance_flood.py): a
counting server on the demo internet's network, gateways with a small NFLOG buffer, a
gateway frozen for moments while the sandbox floods, and the flood workers' results."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import docker
import pytest

from sandbox.internet import DemoInternet
from sandbox.session import Session
from snitch.core.settings import GatewaySettings
from tests.e2e.conftest import pause, wait_for

SMALL_BUFFER = 64 * 1024  # a few batches of copies: a frozen gateway loses some
_SERVER = r"""
import json, signal, socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1])))
s.listen(4096)
n = 0
def done(*_):
    print(json.dumps({"COUNTED": n}), flush=True)
    sys.exit(0)
signal.signal(signal.SIGTERM, done)
print("listening", flush=True)
while True:
    c, _ = s.accept()
"""


def server_source(counted: str, per_connection: str) -> str:
    """A server for ``counting_server`` (Python source): ``per_connection`` runs for each
    accepted socket ``c`` (code at the loop's indentation; it adds to ``n``); stopped,
    it prints ``{counted: n}``."""
    return _SERVER.replace("COUNTED", counted) + per_connection


def small_buffer(monkeypatch: pytest.MonkeyPatch) -> None:
    """This test's gateways keep few copies in the kernel (GatewaySettings.nflog_buffer)."""
    made = Session.gateway_settings

    def settings(self: Session, *args: Any, **kw: Any) -> GatewaySettings:
        return dataclasses.replace(made(self, *args, **kw), nflog_buffer=SMALL_BUFFER)

    monkeypatch.setattr(Session, "gateway_settings", settings)


@dataclass
class Server:
    ip: str
    said: dict[str, Any] = field(default_factory=dict)  # its last line, once it stopped


@contextlib.contextmanager
def counting_server(
    client: docker.DockerClient, image: str, internet: DemoInternet, source: str, port: int
) -> Iterator[Server]:
    """``source`` (Python: prints "listening", then a JSON line when stopped) serving
    ``port`` on the demo internet's network; stopped and removed at the end."""
    container = client.containers.run(
        image, ["python3", "-c", source, str(port)], detach=True,
        network=internet.network_name, name=f"coderun-test-flood-{uuid.uuid4().hex[:8]}",
        labels={"coderun.role": "test"},
    )  # fmt: skip
    try:
        wait_for(lambda: b"listening" in container.logs(), "the server", 60)
        container.reload()
        server = Server(container.attrs["NetworkSettings"]["Networks"][internet.network_name]
                        ["IPAddress"])  # fmt: skip
        try:
            yield server
        finally:
            container.stop(timeout=10)
            server.said = json.loads(container.logs(stderr=False).decode().splitlines()[-1])
    finally:
        container.remove(force=True)


def freeze_now_and_then(session: Session, until: float) -> None:
    """Until ``until`` (monotonic): the gateway frozen 0.3 s in every 1.3 (one that
    cannot keep up, for a moment)."""
    gateway = session.gateway
    assert gateway is not None
    while time.monotonic() < until:
        pause(gateway)
        time.sleep(0.3)
        gateway.unpause()
        time.sleep(1.0)


def workers_said(session: Session) -> tuple[list[dict[str, Any]], list[str]]:
    """Once the sandbox exited: the JSON line of each flood worker, and all it printed."""
    sandbox = session.sandbox
    assert sandbox is not None
    wait_for(lambda: sandbox.reload() or sandbox.status == "exited", "the flood's end", 60)
    out = sandbox.logs(stdout=True, stderr=False).decode().splitlines()
    return [json.loads(line) for line in out if line.startswith("{")], out
