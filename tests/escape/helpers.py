"""Trusted helpers for the escape and fail-closed tests: observers that prove a negative.

- ``ContainerSniffer``: ``sniffer.py`` in a helper container sharing a network namespace
  (the demo internet's, a sandbox's, a target's), with ``CAP_NET_RAW``. ``collect()``
  first sends a sentinel datagram from the host and waits until the sniffer printed it,
  so every packet that arrived before is in the records (no sleep-and-hope).
- ``HostListener``: TCP and UDP listeners on one host address (a bridge's), recording
  who connected.
- small lookups: a network's bridge device, an interface's IPv6 link-local address.

Helpers carry the ``coderun.session`` label with an ``internet-`` prefix: ``coderun gc``
removes them once this process is gone, and ``leftovers()`` does not count them (they
belong to the test, like the demo internet).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import uuid
from pathlib import Path
from typing import Any

import docker
import docker.errors
from docker.models.containers import Container
from docker.models.networks import Network

from sandbox.labels import LABEL, OWNER_HOST, OWNER_PID, ROLE
from tests.e2e.conftest import wait_for

HERE = Path(__file__).resolve().parent
SENTINEL = b"CODERUN-SENTINEL-"


def helper_labels(ident: str, role: str) -> dict[str, str]:
    return {LABEL: ident, OWNER_PID: str(os.getpid()), OWNER_HOST: socket.gethostname(), ROLE: role}


def new_ident(kind: str) -> str:
    return f"internet-{kind}-{uuid.uuid4().hex[:8]}"


class ContainerSniffer:
    """``sniffer.py`` running in ``netns_of``'s network namespace."""

    def __init__(
        self,
        client: docker.DockerClient,
        image: str,
        netns_of: Container,
        patterns: list[bytes],
        ident: str,
        name: str,
    ) -> None:
        self.patterns = [*patterns, SENTINEL]
        self.container = client.containers.run(
            image,
            command=["python3", "/esc/sniffer.py", *(p.hex() for p in self.patterns)],
            name=f"coderun-{ident}-{name}",
            detach=True,
            network_mode=f"container:{netns_of.id}",
            cap_drop=["ALL"],
            cap_add=["NET_RAW"],
            labels=helper_labels(ident, "sniffer"),
            volumes={str(HERE): {"bind": "/esc", "mode": "ro"}},
        )

    def wait_ready(self, timeout: float = 30) -> None:
        wait_for(lambda: b"SNIFFING" in self.container.logs(), "a sniffer", timeout)

    def lines(self) -> list[dict[str, Any]]:
        out = self.container.logs(stdout=True, stderr=False).decode(errors="replace")
        return [json.loads(line) for line in out.splitlines() if line.startswith("{")]

    def collect(self, address: str, timeout: float = 30) -> list[dict[str, Any]]:
        """Every packet received so far: a sentinel sent now must show up last."""
        token = SENTINEL + uuid.uuid4().hex.encode()
        index = len(self.patterns) - 1

        def seen() -> list[dict[str, Any]] | None:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.sendto(token, (address, 9))  # discard port; nobody needs to answer
            records = self.lines()
            return records if any(index in r["hits"] for r in records) else None

        records: list[dict[str, Any]] = wait_for(seen, f"the sentinel at {address}", timeout)  # type: ignore[assignment]
        return [r for r in records if index not in r["hits"]]

    def remove(self) -> None:
        with contextlib.suppress(docker.errors.APIError):
            self.container.remove(force=True)


class HostListener:
    """TCP and UDP on ``address:port`` on this host; ``hits`` lists every peer."""

    def __init__(self, address: str, port: int) -> None:
        self.address = address
        self.hits: list[dict[str, Any]] = []
        self.tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.tcp.bind((address, port))
        self.tcp.listen(64)
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind((address, port))
        self._stop = False
        for target in (self._serve_tcp, self._serve_udp):
            threading.Thread(target=target, daemon=True).start()

    def _serve_tcp(self) -> None:
        while not self._stop:
            try:
                conn, peer = self.tcp.accept()
            except OSError:
                return
            self.hits.append({"proto": "tcp", "peer": peer[0]})
            conn.close()

    def _serve_udp(self) -> None:
        while not self._stop:
            try:
                data, peer = self.udp.recvfrom(70000)
            except OSError:
                return
            if peer is None:  # shut down
                return
            self.hits.append({"proto": "udp", "peer": peer[0], "data": data[:40].decode("latin-1")})

    def close(self) -> None:
        self._stop = True
        for sock in (self.tcp, self.udp):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()


def bridge_device(network: Network) -> str:
    """The host's bridge interface of a Docker bridge network."""
    network.reload()
    options = network.attrs.get("Options") or {}
    return str(options.get("com.docker.network.bridge.name") or f"br-{network.id[:12]}")


def bridge_gateway(network: Network) -> str:
    network.reload()
    for cfg in network.attrs["IPAM"]["Config"]:
        if ":" not in cfg.get("Subnet", ":") and cfg.get("Gateway"):
            return str(cfg["Gateway"])
    raise AssertionError(f"network {network.name} has no IPv4 gateway")


def link_local(ifname: str, if_inet6: str = "/proc/net/if_inet6") -> str:
    """The IPv6 link-local address of ``ifname`` in this namespace, or ''."""
    with contextlib.suppress(FileNotFoundError):
        for line in Path(if_inet6).read_text().splitlines():
            parts = line.split()
            if parts[-1] == ifname and parts[0].startswith("fe80"):
                return format_v6(parts[0])
    return ""


def format_v6(hex32: str) -> str:
    return socket.inet_ntop(socket.AF_INET6, bytes.fromhex(hex32))


def container_ip(container: Container, network: str) -> str:
    container.reload()
    return str(container.attrs["NetworkSettings"]["Networks"][network]["IPAddress"])


def objects_of(client: docker.DockerClient, sessions: list[str]) -> list[str]:
    """Containers and networks of these sessions that exist now.

    Like conftest's leftovers(), but listing without inspecting each container: a run
    that removes objects meanwhile (another run's gc) cannot make it fail.
    """
    found = []
    for c in client.containers.list(all=True, sparse=True, filters={"label": "coderun.session"}):
        if c.attrs.get("Labels", {}).get("coderun.session") in sessions:
            found.append(f"container {c.attrs['Names'][0].lstrip('/')}")
    for n in client.networks.list(filters={"label": "coderun.session"}):
        if (n.attrs.get("Labels") or {}).get("coderun.session") in sessions:
            found.append(f"network {n.name}")
    for v in client.volumes.list(filters={"label": "coderun.session"}):
        if (v.attrs.get("Labels") or {}).get("coderun.session") in sessions:
            found.append(f"volume {v.name}")
    return found
