"""Listening sockets in the sandbox, and forwards to them from the host (issue 16).

The host watches the sandbox's network namespace (through the holder, which shares it)
and reports what listens (``POST /ports``); every change is an event (topic ``ports``)
for the dashboard and the line prompt. A person (or ``run -p``) asks for a forward
(``POST /ports/forward``): the gateway then listens on a unix socket in the session
folder, ``fwd-PORT.sock`` (0600, the host user's), and relays each connection to the
sandbox's PORT; the host's ``coderun run`` accepts on 127.0.0.1:HOSTPORT and splices to
it. Each forwarded connection is logged as an inbound flow. Nothing reaches the sandbox
from outside any other way: its only route is this gateway, which forwards nothing in.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from snitch.core.grammar import Topic
from snitch.core.logentry import INBOUND_REASON, EntryKind, LogEntry
from snitch.gateway.events import EventBus

log = logging.getLogger(__name__)

MAX_LISTENING = 256  # what one report may list (a sandbox can open many sockets)
MAX_FORWARDS = 32
LOOPBACK = "127.0.0.1"


class PortError(ValueError):
    """A bad report or forward request (the API answers 400)."""


@dataclass
class Listening:
    proto: str  # tcp | udp
    port: int
    addr: str  # the address it is bound to in the sandbox (0.0.0.0: every one)
    seen: float = 0.0  # when the host's watcher saw it first (CLOCK_MONOTONIC)
    process: str = ""  # the program that opened it, when the host could tell

    def to_dict(self) -> dict[str, Any]:
        return {"proto": self.proto, "port": self.port, "addr": self.addr, "seen": self.seen,
                "process": self.process}  # fmt: skip

    @property
    def key(self) -> str:
        return f"{self.proto}/{self.port}"


@dataclass
class Forward:
    port: int
    host_port: int
    bind: str = LOOPBACK
    socket: str = ""  # the unix socket's name in the session folder
    connections: int = 0
    server: asyncio.AbstractServer | None = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {"port": self.port, "host_port": self.host_port, "bind": self.bind,
                "socket": self.socket, "connections": self.connections}  # fmt: skip


def _port(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise PortError(f"{what} must be a port number (1-65535)")
    return value


def parse_listening(item: Any) -> Listening:
    if not isinstance(item, dict):
        raise PortError("each listening socket is an object")
    proto = item.get("proto")
    if proto not in ("tcp", "udp"):
        raise PortError("proto must be tcp or udp")
    addr = str(item.get("addr", "0.0.0.0"))
    try:
        ipaddress.ip_address(addr)
    except ValueError:
        raise PortError(f"bad address {addr!r}") from None
    seen = item.get("seen", 0.0)
    process = item.get("process", "")
    return Listening(proto, _port(item.get("port"), "port"), addr,
                     float(seen) if isinstance(seen, int | float) else 0.0,
                     str(process)[:200])  # fmt: skip


class Ports:
    """What listens in the sandbox, and the forwards to it."""

    def __init__(self, bus: EventBus, session: str, folder: Path,
                 uid: int | None = None, gid: int | None = None) -> None:  # fmt: skip
        self.bus = bus
        self.session = session
        self.folder = folder
        self.uid, self.gid = uid, gid
        self.address = ""  # the sandbox's address (from the host's report)
        self.listening: dict[str, Listening] = {}
        self.forwards: dict[int, Forward] = {}
        self._relays: set[asyncio.Task[None]] = set()

    def state(self) -> dict[str, Any]:
        return {
            "address": self.address,
            "listening": [x.to_dict() for x in sorted(self.listening.values(),
                                                      key=lambda x: (x.proto, x.port))],
            "forwards": [f.to_dict() for f in sorted(self.forwards.values(),
                                                     key=lambda f: f.port)],
        }  # fmt: skip

    def report(self, body: Any) -> dict[str, Any]:
        """The host's view of what listens now (the whole set)."""
        if not isinstance(body, dict) or not isinstance(body.get("listening"), list):
            raise PortError('want {"address": IP, "listening": [...]}')
        items = body["listening"]
        if len(items) > MAX_LISTENING:
            raise PortError(f"at most {MAX_LISTENING} listening sockets a report")
        address = str(body.get("address", self.address))
        if address:
            try:
                ipaddress.IPv4Address(address)
            except ValueError:
                raise PortError(f"bad sandbox address {address!r}") from None
        now = {x.key: x for x in map(parse_listening, items)}
        for key, old in self.listening.items():  # keep the first sighting
            if key in now and old.addr == now[key].addr:
                now[key].seen = old.seen or now[key].seen
                now[key].process = now[key].process or old.process
        changed = now.keys() != self.listening.keys() or address != self.address
        self.listening, self.address = now, address
        if changed:
            for key in now.keys() - self.listening.keys():
                log.info("listening in the sandbox: %s", key)
            self.bus.publish(Topic.PORTS, self.state())
        return self.state()

    async def forward(self, body: Any) -> dict[str, Any]:
        """Start relaying connections to the sandbox's ``port`` (idempotent per port)."""
        if not isinstance(body, dict):
            raise PortError('want {"port": N, "host_port": N}')
        port = _port(body.get("port"), "port")
        host_port = _port(body.get("host_port", port), "host_port")
        bind = str(body.get("bind", LOOPBACK))
        try:
            ipaddress.IPv4Address(bind)
        except ValueError:
            raise PortError(f"bad bind address {bind!r}") from None
        address = body.get("address")
        if address and not self.address:  # the host knows it before its first report
            try:
                self.address = str(ipaddress.IPv4Address(str(address)))
            except ValueError:
                raise PortError(f"bad sandbox address {address!r}") from None
        if port in self.forwards:
            return self.forwards[port].to_dict()
        if len(self.forwards) >= MAX_FORWARDS:
            raise PortError(f"at most {MAX_FORWARDS} forwards")
        fwd = Forward(port, host_port, bind, f"fwd-{port}.sock")
        path = self.folder / fwd.socket
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        old = os.umask(0o177)
        try:
            fwd.server = await asyncio.start_unix_server(
                lambda r, w: self._relay(fwd, r, w), str(path))  # fmt: skip
        finally:
            os.umask(old)
        if self.uid is not None and self.gid is not None:
            os.chown(path, self.uid, self.gid)
        self.forwards[port] = fwd
        self.bus.publish(Topic.PORTS, self.state())
        return fwd.to_dict()

    def _relay(self, fwd: Forward, reader: asyncio.StreamReader,
               writer: asyncio.StreamWriter) -> None:  # fmt: skip
        task = asyncio.get_running_loop().create_task(self._serve(fwd, reader, writer))
        self._relays.add(task)
        task.add_done_callback(self._relays.discard)

    async def _serve(self, fwd: Forward, reader: asyncio.StreamReader,
                     writer: asyncio.StreamWriter) -> None:  # fmt: skip
        fwd.connections += 1
        start = time.time()
        entry = LogEntry(EntryKind.FLOW, session=self.session, time=start, proto="tcp",
                         src=fwd.bind, sport=fwd.host_port, dst=self.address, dport=fwd.port,
                         verdict="allow",
                         reason=f"{INBOUND_REASON}forwarded from {fwd.bind}:"
                         f"{fwd.host_port}")  # fmt: skip
        try:
            if not self.address:
                raise OSError("the sandbox's address is not known yet")
            up_reader, up_writer = await asyncio.open_connection(self.address, fwd.port)
        except OSError as exc:
            why = f"nothing answers on {fwd.port} ({exc.strerror or exc})"
            entry.verdict, entry.reason = "deny", f"{entry.reason}: {why}"
            self.bus.log(entry)
            writer.close()
            return
        counts = [0, 0]

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter, i: int) -> None:
            try:
                while data := await src.read(65536):
                    counts[i] += len(data)
                    dst.write(data)
                    await dst.drain()
                if dst.can_write_eof():
                    dst.write_eof()
            except (OSError, RuntimeError):
                dst.close()

        try:
            await asyncio.gather(pipe(reader, up_writer, 0), pipe(up_reader, writer, 1))
        finally:
            for w in (writer, up_writer):
                w.close()
            entry.bytes_in, entry.bytes_out = counts
            entry.duration_ms = (time.time() - start) * 1000
            self.bus.log(entry)

    def close(self) -> None:
        for fwd in self.forwards.values():
            if fwd.server is not None:
                fwd.server.close()
            with contextlib.suppress(FileNotFoundError):
                (self.folder / fwd.socket).unlink()
        for task in list(self._relays):
            task.cancel()
