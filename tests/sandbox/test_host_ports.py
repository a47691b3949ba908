"""The host's side of port forwards (sandbox/ports.py), without Docker: -p parsing, and
a forward opens on loopback unless the run itself named another address."""

from __future__ import annotations

import socket
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from sandbox.ports import HostForwards, Publish, parse_publish


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("8080:80", Publish(8080, 80, "127.0.0.1")),
        ("127.0.0.1:8080:80", Publish(8080, 80, "127.0.0.1")),
        ("0.0.0.0:8080:80/tcp", Publish(8080, 80, "0.0.0.0")),
    ],
)
def test_publish_forms(text: str, want: Publish) -> None:
    assert parse_publish(text) == want


@pytest.mark.parametrize("text", ["80", "a:80", "8080:0", "70000:80", "::1:80:80", "1.2.3:80:80"])
def test_bad_publish_is_refused(text: str) -> None:
    with pytest.raises((ValueError, OSError)):
        parse_publish(text)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _relay(folder: Path, name: str) -> threading.Thread:
    """A stand-in for the gateway's relay socket: answers one connection with 'relayed'."""
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(folder / name))
    server.listen(1)

    def serve() -> None:
        conn, _ = server.accept()
        conn.sendall(b"relayed " + conn.recv(100))
        conn.close()
        server.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return thread


def _forwards(tmp_path: Path) -> HostForwards:
    session: Any = SimpleNamespace(dir=tmp_path, id="s1", sandbox_ip="192.0.2.5")
    return HostForwards(session)


def test_a_forward_listens_on_loopback_and_splices_to_the_relay(tmp_path: Path) -> None:
    forwards = _forwards(tmp_path)
    host_port = _free_port()
    relay = _relay(tmp_path, "fwd-80.sock")
    forwards.open({"port": 80, "host_port": host_port, "socket": "fwd-80.sock"})
    try:
        with socket.create_connection(("127.0.0.1", host_port), timeout=5) as conn:
            conn.sendall(b"hi")
            conn.shutdown(socket.SHUT_WR)
            assert conn.recv(100) == b"relayed hi"
        relay.join(5)
    finally:
        forwards.stop()


def test_another_address_only_when_the_run_named_it(tmp_path: Path) -> None:
    forwards = _forwards(tmp_path)
    host_port = _free_port()
    forwards.open({"port": 80, "host_port": host_port, "bind": "0.0.0.0"})
    try:
        server = forwards.listeners[80]
        assert server.getsockname() == ("127.0.0.1", host_port)
        assert "only `-p 0.0.0.0:...`" in forwards.errors[0]
    finally:
        forwards.stop()
    named = _forwards(tmp_path)
    named.public.add(("0.0.0.0", host_port, 80))
    named.open({"port": 80, "host_port": host_port, "bind": "0.0.0.0"})
    try:
        assert named.listeners[80].getsockname() == ("0.0.0.0", host_port)
        assert named.errors == []
    finally:
        named.stop()
