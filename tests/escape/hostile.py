"""A hostile script: runs *inside* the sandbox (stdlib only) and tries to get out.

    python3 hostile.py /ctl/targets.json

Every attempt prints one JSON line ``{"attack", "ok", "value", "error", "errno", "t",
"seconds"}``: ``ok`` is true when the operation itself succeeded (a socket was created, a
connection made, an answer came back), so the test decides which outcome is an escape.
Positive controls (``control_*``) must succeed, so a broken probe cannot pass vacuously.

Every address comes from the targets file, written by the test: containers and networks
the test started, the session's own gateway and bridge. Nothing else is ever contacted.

The script also serves a TCP/UDP listener (``listen_port``) for the *other* session to
try to reach; after its attacks it prints ``done`` and waits for ``/ctl/stop``.

The attacks are in its siblings (the whole folder is mounted at /esc, the script's own
folder is first on sys.path): ``hostile_wire.py`` the output and the calls they make,
``hostile_local.py`` the sandbox's own namespace, ``hostile_network.py`` what goes
through the gateway, ``hostile_flood.py`` the heavy ones.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

# Siblings in the folder mounted at /esc (the script's own, first on sys.path).
from hostile_flood import flood, garbage
from hostile_local import api_socket, ipv6, raw_sockets, routes_and_addresses
from hostile_network import (
    broadcast_and_multicast,
    embedded_dns,
    gateway_ports,
    host_and_neighbours,
    icmp_and_fragments,
    resolvers_and_tunnels,
    spoofing,
    tls_and_http,
)
from hostile_wire import T, emit, read

# -- the listener the other session tries to reach ----------------------------------------

HITS: list[dict[str, Any]] = []


def server(kind: int, port: int) -> socket.socket:
    """A dual-stack listener if IPv6 sockets exist here, else an IPv4 one."""
    try:
        srv = socket.socket(socket.AF_INET6, kind)
        srv.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind(("::", port))
    except OSError:
        srv = socket.socket(socket.AF_INET, kind)
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind(("0.0.0.0", port))
    return srv


def listen(port: int) -> None:
    tcp_srv, udp_srv = server(socket.SOCK_STREAM, port), server(socket.SOCK_DGRAM, port)
    tcp_srv.listen(64)

    def serve_tcp() -> None:
        while True:
            conn, peer = tcp_srv.accept()
            HITS.append({"proto": "tcp", "peer": peer[0]})
            conn.close()

    def serve_udp() -> None:
        while True:
            data, peer = udp_srv.recvfrom(70000)
            HITS.append({"proto": "udp", "peer": peer[0], "len": len(data)})

    threading.Thread(target=serve_tcp, daemon=True).start()
    threading.Thread(target=serve_udp, daemon=True).start()


def main() -> None:
    T.update(json.loads(read(sys.argv[1])))
    listen(T["listen_port"])
    enforce = T["role"] == "a"
    groups: list[Callable[[], None]] = [
        raw_sockets,
        routes_and_addresses,
        ipv6,
        embedded_dns,
        gateway_ports,
        api_socket,
        lambda: host_and_neighbours(enforce),
    ]
    if enforce:
        groups += [
            broadcast_and_multicast,
            resolvers_and_tunnels,
            spoofing,
            tls_and_http,
            icmp_and_fragments,
        ]
    # Independent groups run side by side (each waits on its own timeouts) ...
    threads = [threading.Thread(target=group) for group in groups]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # ... then the heavy ones, alone: garbage at the resolver, and the flood last.
    if enforce:
        garbage()
        flood()
    emit("done", True)
    deadline = time.monotonic() + 300
    while not os.path.exists("/ctl/stop") and time.monotonic() < deadline:
        time.sleep(0.05)
    emit("listener", True, HITS)


if __name__ == "__main__":
    main()
