"""Listening ports (issue 16): a server started in the sandbox is seen within a second,
and reachable from the host after a forward, and not before; forwarded connections are
logged as inbound flows; the host side listens on loopback only."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import docker
import pytest

from sandbox.internet import DemoInternet
from snitch.core.logfile import read_log
from snitch.core.settings import Topology
from snitch.review.client import GatewayClient
from tests.e2e.conftest import coderun_cmd, leftovers, wait_for

# Waits 3 s, then serves HTTP on 0.0.0.0:8000 (and says when, in CLOCK_MONOTONIC, which
# the host shares) until someone asks for /quit.
SERVER = r"""
import http.server, json, os, sys, time
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = f"hello from the sandbox {self.path}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        if self.path == "/quit":
            self.server.quit = True
    def log_message(self, *a):
        pass
time.sleep(3)
server = http.server.HTTPServer(("0.0.0.0", int(os.environ.get("PORT", "8000"))), H)
server.quit = False
print(json.dumps({"listening": time.monotonic()}), flush=True)
server.timeout = 0.2
deadline = time.monotonic() + 120
while not server.quit and time.monotonic() < deadline:
    server.handle_request()
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _loopback_listeners() -> set[tuple[str, int]]:
    """The host's listening TCP sockets, from /proc/net/tcp: (address, port)."""
    found = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[3] == "0A":
            ip, port = fields[1].split(":")
            addr = ".".join(str(int(ip[i : i + 2], 16)) for i in (6, 4, 2, 0))
            found.add((addr, int(port, 16)))
    return found


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return str(resp.read().decode())


class Events:
    """The gateway's event stream in a thread: when each ``ports`` event arrived."""

    def __init__(self, api: GatewayClient) -> None:
        self.api = api
        self.ports: list[tuple[float, dict[str, Any]]] = []
        self.ready = threading.Event()
        threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True).start()

    async def _run(self) -> None:
        async for event in self.api.events():
            if event.topic == "session":
                self.ready.set()
            if event.topic == "ports":
                self.ports.append((time.monotonic(), event.data))


def test_a_sandbox_server_is_seen_within_a_second_and_reachable_only_once_forwarded(
    home: Path, internet: DemoInternet, tags: dict[str, str], tmp_path: Path,
    client: docker.DockerClient,
) -> None:  # fmt: skip
    script = tmp_path / "server.py"
    script.write_text(SERVER)
    proc = subprocess.Popen(
        coderun_cmd("run", "--mode", "enforce", "--image", "python", "--egress-network",
                    internet.network_name, "--dns-upstream", internet.ip,
                    "-v", f"{script}:/server.py:ro", "--", "python3", "/server.py"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        sock = wait_for(lambda: next((home / "sessions").glob("*/api.sock"), None)
                        if (home / "sessions").exists() else None, "the session", 60)  # fmt: skip
        folder = Path(str(sock)).parent
        api = GatewayClient(folder / "api.sock", (home / "api-token").read_text().strip())
        state_file = folder / "gateway.json"
        wait_for(lambda: state_file.exists()
                 and json.loads(state_file.read_text()).get("state") == "ready",
                 "the gateway", 60)  # fmt: skip
        events = Events(api)
        assert events.ready.wait(30)
        assert proc.stdout is not None
        started = json.loads(proc.stdout.readline())["listening"]  # the server listens now

        def seen() -> tuple[float, dict[str, Any]] | None:
            return next(((t, d) for t, d in events.ports
                         if any(x["port"] == 8000 for x in d["listening"])), None)  # fmt: skip

        at, state = wait_for(seen, "the port in the gateway's events", 10)  # type: ignore[misc]
        [item] = [x for x in state["listening"] if x["port"] == 8000]
        assert (item["proto"], item["addr"]) == ("tcp", "0.0.0.0")
        assert item["process"].startswith("python3 (pid "), item  # as the sandbox sees it
        print(f"listening port seen by the watcher {item['seen'] - started:.3f} s and by the "
              f"API's clients {at - started:.3f} s after listen()")
        assert item["seen"] - started <= 1.0
        assert at - started <= 1.0

        # Not reachable before a forward: nothing listens on the host, and the sandbox's
        # own address answers nobody but its gateway.
        host_port = _free_port()
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", host_port), timeout=3).close()
        with pytest.raises(OSError):
            socket.create_connection((state["address"], 8000), timeout=3).close()

        # The person forwards it (what the dashboard's key does): reachable on loopback.
        asyncio.run(api.request("POST", "/ports/forward", {"port": 8000, "host_port": host_port}))
        wait_for(lambda: ("127.0.0.1", host_port) in _loopback_listeners(), "the host port", 10)
        assert ("0.0.0.0", host_port) not in _loopback_listeners()
        assert _get(f"http://127.0.0.1:{host_port}/first") == "hello from the sandbox /first"
        assert _get(f"http://127.0.0.1:{host_port}/quit") == "hello from the sandbox /quit"
        assert proc.wait(60) == 0, proc.stderr.read() if proc.stderr else ""
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(30)
    inbound = [e for e in read_log(folder / "flows.jsonl") if e.reason.startswith("inbound")]
    assert [(e.dport, e.verdict, e.sport) for e in inbound] == [
        (8000, "allow", host_port), (8000, "allow", host_port)]  # fmt: skip
    assert all(e.bytes_out > 0 and e.bytes_in > 0 for e in inbound)
    wait_for(lambda: leftovers(client) == [], "the session to be removed", 30)


@pytest.mark.parametrize("topology", list(Topology), ids=str)
def test_publish_up_front_forwards_from_loopback(
    run_coderun: Any, home: Path, tmp_path: Path, client: docker.DockerClient,
    topology: Topology,
) -> None:  # fmt: skip
    script = tmp_path / "client.py"
    host_port = _free_port()
    # The sandbox serves, and the host fetches through -p while it runs.
    script.write_text(SERVER)
    result: dict[str, Any] = {}

    def fetch() -> None:
        wait_for(lambda: ("127.0.0.1", host_port) in _loopback_listeners(), "-p's port", 90)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                result["body"] = _get(f"http://127.0.0.1:{host_port}/quit")
                return
            except OSError:
                time.sleep(0.2)  # the server starts 3 s after the sandbox

    fetcher = threading.Thread(target=fetch, daemon=True)
    fetcher.start()
    run = run_coderun("--mode", "enforce", "--image", "python", "-p", f"{host_port}:8000",
                      "-v", f"{script}:/server.py:ro", "--", "python3", "/server.py")  # fmt: skip
    fetcher.join(5)
    assert run.status == 0, run.stderr
    assert result.get("body") == "hello from the sandbox /quit"
    inbound = [e for e in run.log if e.reason.startswith("inbound")]
    # Tries before the server listened were refused by the sandbox: logged as such.
    assert [e.dport for e in inbound if e.verdict == "allow"] == [8000]
    assert all("nothing answers on 8000" in e.reason for e in inbound if e.verdict == "deny")
    assert leftovers(client) == []


def test_the_line_prompt_offers_to_forward_a_new_port(
    home: Path, internet: DemoInternet, tags: dict[str, str], tmp_path: Path,
) -> None:  # fmt: skip
    from sandbox.line_prompt import SETTLE_SECONDS
    from tests.approver.terminal import Terminal, cli_env

    script = tmp_path / "server.py"
    script.write_text(SERVER)
    port = _free_port()  # the same number on both sides: free on the host
    term = Terminal(coderun_cmd("run", "--mode", "ask", "--prompt", "line", "--image", "python",
                                "--egress-network", internet.network_name, "--dns-upstream",
                                internet.ip, "-e", f"PORT={port}", "-v",
                                f"{script}:/server.py:ro", "--", "python3", "/server.py"),
                    cli_env(home))  # fmt: skip
    try:
        term.wait_for(f"the sandbox listens on {port}/tcp (bound to 0.0.0.0, python3 (pid "
                      .encode())  # fmt: skip
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=3).close()
        time.sleep(SETTLE_SECONDS + 0.15)
        term.type("f\n")
        term.wait_for(f"forwarded: 127.0.0.1:{port} -> the sandbox's {port}/tcp".encode())
        wait_for(lambda: ("127.0.0.1", port) in _loopback_listeners(), "the host port", 10)
        assert _get(f"http://127.0.0.1:{port}/quit") == "hello from the sandbox /quit"
        assert term.wait(60) == 0
    finally:
        term.close()
