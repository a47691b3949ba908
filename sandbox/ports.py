"""The host's side of listening ports (issue 16; the gateway's is snitch/gateway/ports.py).

``PortWatch`` runs a small poller in the holder (it shares the sandbox's network
namespace): ``/proc/net/{tcp,udp}`` every ``POLL`` seconds, one JSON line whenever the
set of listening sockets changes, stamped with CLOCK_MONOTONIC. Each change is reported
to the gateway (``POST /ports``), which shows it to the dashboard and the line prompt.

``HostForwards`` opens, for every forward the gateway has (asked for by a person in the
dashboard or up front with ``run -p [BIND:]HOSTPORT:PORT``), a listener on BIND:HOSTPORT
(127.0.0.1 unless the user wrote another address) and splices each connection to the
gateway's ``fwd-PORT.sock``, which relays it into the sandbox and logs it.
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import docker.errors

from sandbox import paths
from sandbox.pod import GATEWAY_UID
from sandbox.session import Session
from snitch.core.settings import Topology

POLL = 0.25  # seconds between two looks at /proc/net (the issue asks <= 0.5)
LOOPBACK = "127.0.0.1"

# Runs in the holder (python3 of the gateway image); stdlib only, no input from outside.
WATCHER = r"""
import json, sys, time
STATES = {"tcp": "0A", "udp": "07"}
DOCKER_DNS = "127.0.0.11"  # Docker's embedded resolver listens in every such namespace
NOT_OURS = sys.argv[2]  # a pod's gateway uid: its forwarder and proxy are not the sandbox's
def addr(hexaddr):
    ip, port = hexaddr.split(":")
    if len(ip) == 8:
        ip = ".".join(str(int(ip[i:i + 2], 16)) for i in (6, 4, 2, 0))
    else:
        ip = "::"
    return ip, int(port, 16)
def listening():
    out = set()
    for proto in ("tcp", "udp"):
        for name in (proto, proto + "6"):
            try:
                lines = open("/proc/net/" + name).read().splitlines()[1:]
            except OSError:
                continue
            for line in lines:
                f = line.split()
                if len(f) > 3 and f[3] == STATES[proto] and f[2].endswith(":0000"):
                    ip, port = addr(f[1])
                    if port and ip != DOCKER_DNS and f[7] != NOT_OURS:
                        out.add((proto, port, ip, f[9]))
    return out
last = None
while True:
    now = listening()
    if now != last:
        t = time.monotonic()
        items = [{"proto": p, "port": n, "addr": a, "seen": t, "inode": i}
                 for p, n, a, i in sorted(now)]
        sys.stdout.write(json.dumps(items) + "\n")
        sys.stdout.flush()
        last = now
    time.sleep(float(sys.argv[1]))
"""


@dataclass(frozen=True)
class Publish:
    """``-p [BIND:]HOSTPORT:PORT``."""

    host_port: int
    port: int
    bind: str = LOOPBACK

    def body(self) -> dict[str, Any]:
        return {"port": self.port, "host_port": self.host_port, "bind": self.bind}


def parse_publish(text: str) -> Publish:
    """``8080:80``, ``127.0.0.1:8080:80`` or ``0.0.0.0:8080:80`` (TCP)."""
    m = re.fullmatch(r"(?:(\d{1,3}(?:\.\d{1,3}){3}):)?(\d{1,5}):(\d{1,5})(?:/tcp)?", text)
    if not m:
        raise ValueError(f"{text!r}: want [BIND:]HOSTPORT:PORT, e.g. 8080:80")
    bind, host_port, port = m.group(1) or LOOPBACK, int(m.group(2)), int(m.group(3))
    if not (1 <= host_port <= 65535 and 1 <= port <= 65535):
        raise ValueError(f"{text!r}: ports are 1-65535")
    socket.inet_aton(bind)
    return Publish(host_port, port, bind)


def _api(session: Session, method: str, path: str, body: Any = None) -> Any:
    # Start-up time: asyncio and the API client load in the run's threads, once the
    # sandbox runs, not before the first Docker call.
    import asyncio

    from snitch.review.client import GatewayClient

    client = GatewayClient(session.api_socket, paths.api_token(), session.id)
    return asyncio.run(client.request(method, path, body))


def processes_of(session: Session, inodes: set[str]) -> dict[str, str]:
    """``socket inode -> "NAME (pid N)"`` for the sandbox's processes holding those
    sockets (N as the sandbox sees it). Read from the host's /proc: where this user may
    not look at the sandbox's processes (another uid, no root), nothing is known."""
    import os
    from pathlib import Path

    found: dict[str, str] = {}
    if session.sandbox is None:
        return found
    try:
        top = session.sandbox.top(ps_args="-o pid")
        pids = [str(row[0]) for row in top.get("Processes") or []]
    except docker.errors.DockerException:
        return found
    wanted = {f"socket:[{inode}]": inode for inode in inodes}
    for pid in pids:
        proc = Path("/proc") / pid
        try:
            links = {os.readlink(proc / "fd" / fd) for fd in os.listdir(proc / "fd")}
        except OSError:
            continue
        hits = [wanted[link] for link in links if link in wanted]
        if not hits:
            continue
        with contextlib.suppress(OSError):
            name = (proc / "comm").read_text().strip()
            inner = pid
            for line in (proc / "status").read_text().splitlines():
                if line.startswith("NSpid:"):
                    inner = line.split()[-1]
            for inode in hits:
                found.setdefault(inode, f"{name} (pid {inner})")
    return found


class PortWatch:
    """Reports the sandbox's listening sockets to its gateway while the session runs."""

    def __init__(self, session: Session, on_change: Callable[[list[dict[str, Any]]], None]
                 | None = None) -> None:  # fmt: skip
        self.session = session
        self.on_change = on_change
        self.stopped = threading.Event()
        self.known: set[tuple[str, int]] = set()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self.thread.start()

    def _run(self) -> None:
        holder = self.session.holder
        if holder is None:
            return
        api = self.session.client.api
        try:
            pod = self.session.config.network.topology is Topology.POD
            gateway_uid = str(GATEWAY_UID) if pod else ""
            exec_id = api.exec_create(holder.id, ["python3", "-c", WATCHER, str(POLL),
                                                  gateway_uid])["Id"]  # fmt: skip
            stream = api.exec_start(exec_id, stream=True)
        except docker.errors.DockerException as exc:
            print(f"coderun: cannot watch the sandbox's ports: {exc}", file=sys.stderr)
            return
        buffer = b""
        with contextlib.suppress(Exception):  # the holder goes away with the session
            for chunk in stream:
                if self.stopped.is_set():
                    return
                buffer += chunk
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    self._report(json.loads(line))

    def _report(self, items: list[dict[str, Any]]) -> None:
        fresh = {str(x.pop("inode", "")): x for x in items}
        unknown = {inode for inode, x in fresh.items()
                   if (x["proto"], x["port"]) not in self.known and inode not in ("", "0")}
        names = processes_of(self.session, unknown) if unknown else {}
        for inode, item in fresh.items():
            item["process"] = names.get(inode, "")
        self.known = {(x["proto"], x["port"]) for x in items}
        with contextlib.suppress(Exception):
            _api(self.session, "POST", "/ports",
                 {"address": self.session.sandbox_ip, "listening": items})  # fmt: skip
        if self.on_change is not None:
            self.on_change(items)

    def stop(self) -> None:
        self.stopped.set()


class HostForwards:
    """Listeners on the host for the gateway's forwards, spliced to its relay sockets."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.public: set[tuple[str, int, int]] = set()  # -p BIND:... the user wrote
        self.listeners: dict[int, socket.socket] = {}
        self.errors: list[str] = []
        self.stopped = threading.Event()
        self._lock = threading.Lock()
        self._events = threading.Thread(target=self._follow, daemon=True)

    def start(self, publish: list[Publish]) -> None:
        """Ask the gateway for the ``-p`` forwards; follow the ones a person adds."""
        for item in publish:
            self.public.add((item.bind, item.host_port, item.port))
            try:
                body = {**item.body(), "address": self.session.sandbox_ip}
                self.open(_api(self.session, "POST", "/ports/forward", body))
            except Exception as exc:  # noqa: BLE001 - said, and the run goes on
                self.errors.append(f"-p {item.bind}:{item.host_port}:{item.port}: {exc}")
        self._events.start()

    def _follow(self) -> None:
        import asyncio  # start-up time: loaded in this thread (see _api)

        with contextlib.suppress(Exception):
            asyncio.run(self._watch())

    async def _watch(self) -> None:
        import asyncio  # start-up time (see _api)

        from snitch.review.client import GatewayClient

        client = GatewayClient(self.session.api_socket, paths.api_token(), self.session.id)
        while not self.stopped.is_set():
            with contextlib.suppress(Exception):
                state = await client.request("GET", "/ports")
                for fwd in state.get("forwards", []):
                    self.open(fwd)
                async for event in client.events():
                    if self.stopped.is_set():
                        return
                    if event.topic == "ports":
                        for fwd in event.data.get("forwards", []):
                            self.open(fwd)
            await asyncio.sleep(0.5)

    def open(self, fwd: dict[str, Any]) -> None:
        """Listen on the forward's BIND:HOSTPORT (once)."""
        port, host_port = int(fwd["port"]), int(fwd["host_port"])
        bind = str(fwd.get("bind") or LOOPBACK)
        with self._lock:
            if port in self.listeners or self.stopped.is_set():
                return
            if bind != LOOPBACK and (bind, host_port, port) not in self.public:
                self.errors.append(f"forward to {port}: not on {bind}, only `-p {bind}:...` "
                                   "opens a port beyond this machine")  # fmt: skip
                bind = LOOPBACK
            server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                server.bind((bind, host_port))
                server.listen(64)
            except OSError as exc:
                server.close()
                self.errors.append(f"forward {bind}:{host_port} -> {port}: {exc.strerror}")
                self.listeners[port] = socket.socket()  # tried: not again
                return
            self.listeners[port] = server
        relay = self.session.dir / str(fwd.get("socket") or f"fwd-{port}.sock")
        threading.Thread(target=self._accept, args=(server, str(relay)), daemon=True).start()

    def _accept(self, server: socket.socket, relay: str) -> None:
        while not self.stopped.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                return
            threading.Thread(target=self._splice, args=(conn, relay), daemon=True).start()

    @staticmethod
    def _splice(conn: socket.socket, relay: str) -> None:
        up = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            up.connect(relay)
        except OSError:
            conn.close()
            up.close()
            return

        def pump(src: socket.socket, dst: socket.socket) -> None:
            try:
                while data := src.recv(65536):
                    dst.sendall(data)
                dst.shutdown(socket.SHUT_WR)
            except OSError:
                with contextlib.suppress(OSError):
                    dst.shutdown(socket.SHUT_RDWR)

        other = threading.Thread(target=pump, args=(up, conn), daemon=True)
        other.start()
        pump(conn, up)
        other.join()
        conn.close()
        up.close()

    def stop(self) -> None:
        self.stopped.set()
        with self._lock:
            for server in self.listeners.values():
                with contextlib.suppress(OSError):  # wakes a thread blocked in accept()
                    server.shutdown(socket.SHUT_RDWR)
                with contextlib.suppress(OSError):
                    server.close()
            self.listeners.clear()
