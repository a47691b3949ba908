"""Issue 18: plain-HTTP heads that go unheld (glanceguard.py) leave no request unaccounted
for in the log, even when the gateway cannot keep up.

While no deny rule names a host, a plain-HTTP connection's head is not held: its
requests reach the log only through NFLOG copies. The sandbox makes short HTTP requests
as fast as it can (several processes) to a server this test starts on the demo
internet's network, which counts the requests it answered. The gateway's NFLOG buffer
is made small and the gateway is frozen for moments (``docker pause``), so the kernel
drops copies: the log must say so (``web-copies-lost`` lines, ``dropped`` = copies lost),
and every request the server answered is an ``http`` line or among the lost copies.
"""

from __future__ import annotations

import time
from pathlib import Path

import docker
import pytest

from sandbox.config import SessionConfig
from sandbox.internet import DemoInternet
from sandbox.session import Session
from snitch.core.logentry import EntryKind, PeekEvent
from snitch.core.model import Mode
from snitch.core.settings import NetworkShape, RunSettings
from tests.e2e.conftest import latest_log, leftovers
from tests.e2e.floodkit import (
    counting_server,
    freeze_now_and_then,
    server_source,
    small_buffer,
    workers_said,
)
from tests.e2e.probeloop import mine
from tests.e2e.test_kernel_cache_flood import kernel_cache_default

pytestmark = pytest.mark.docker
__all__ = ["kernel_cache_default"]  # the fixture: the kernel cache on, as by default

PORT = 8080
WORKERS = 3
FLOOD_SECONDS = 10
SERVER = server_source(
    "answered",
    r"""
    c.settimeout(2)
    try:
        if c.recv(4096).startswith(b"GET /"):
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            n += 1
    except OSError:
        pass
    c.close()
""",
)
FLOOD = r"""
import json, socket, sys, time
host, port, seconds, tag = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
attempts = ok = 0
end = time.monotonic() + seconds
while time.monotonic() < end:
    attempts += 1
    try:
        with socket.create_connection((host, port), timeout=5) as s:
            head = f"GET /{tag}-{attempts} HTTP/1.1\r\nHost: flood.example.test\r\n\r\n"
            s.sendall(head.encode())
            ok += s.recv(64).startswith(b"HTTP/1.1 200")
    except OSError:
        pass
print(json.dumps({"attempts": attempts, "ok": ok}), flush=True)
"""


def test_unheld_web_heads_are_all_in_the_log_or_counted_lost(
    home: Path,
    internet: DemoInternet,
    tags: dict[str, str],
    client: docker.DockerClient,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    small_buffer(monkeypatch)
    flood = tmp_path / "flood.py"
    flood.write_text(FLOOD)
    with counting_server(client, tags["sandbox-bash"], internet, SERVER, PORT) as server:
        ip = server.ip
        policy = tmp_path / "policy.toml"
        policy.write_text(f'[[rule]]\naction = "allow"\ncidr = "{ip}/32"\nport = {PORT}\n')
        command = " & ".join(
            f"python3 /flood.py {ip} {PORT} {FLOOD_SECONDS} w{i}" for i in range(WORKERS)
        )
        config = SessionConfig(
            image=tags["sandbox-bash"],
            network=NetworkShape(gateway_image=tags["gateway"],
                                 egress_network=internet.network_name, dns_upstream=internet.ip,
                                 web_ports=(PORT,), tls_ports=()),
            run=RunSettings(command=("sh", "-c", f"{command} & wait"), mode=Mode.ENFORCE),
            policy_file=policy,
            volumes=[f"{flood}:/flood.py:ro"],
        )  # fmt: skip
        session = Session(client, config)
        try:
            session.start()
            assert session.sandbox is not None and session.gateway is not None
            session.sandbox.start()
            started = time.monotonic()
            time.sleep(1.0)  # the flood gets going (paced by the run, not awaited on)
            freeze_now_and_then(session, started + FLOOD_SECONDS - 3)
            workers, out = workers_said(session)
        finally:
            session.close()
    answered = server.said["answered"]
    assert len(workers) == WORKERS, out
    log = latest_log(home)
    urls = {e.url for e in log if e.kind is EntryKind.HTTP and e.dst == ip}
    lost = [e for e in log if e.reason == PeekEvent.LOST]
    dropped = sum(e.dropped for e in lost)
    [stats] = [e.message for e in log if e.message.startswith("web flows read in passing")]
    # The point: every request the server answered has a line, or a lost copy counts it.
    assert len(urls) + dropped >= answered, (len(urls), dropped, answered, stats)
    # Not vacuous: many requests, some of them not held (logged from their copies alone),
    # copies were lost, and the log said so.
    assert answered > 500, (answered, workers)
    assert int(stats.split("later requests read: ")[1].split(",")[0]) > 0, stats
    assert lost and dropped > 0, ([e.message for e in lost], stats)
    assert mine(client, home) == [] and not leftovers(client)
