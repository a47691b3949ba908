"""The gateway's port table and relay (snitch/gateway/ports.py), on loopback."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from snitch.gateway.events import EventBus
from snitch.gateway.netfilter import Interfaces, ruleset
from snitch.gateway.ports import PortError, Ports
from tests.fakes import LogCollector


def _ports(tmp_path: Path) -> tuple[Ports, list[tuple[str, dict[str, Any]]]]:
    bus = EventBus()
    return Ports(bus, "s1", tmp_path), LogCollector(bus).events


def test_a_report_is_an_event_only_when_the_set_changes(tmp_path: Path) -> None:
    ports, seen = _ports(tmp_path)
    item = {"proto": "tcp", "port": 8000, "addr": "0.0.0.0", "seen": 12.5}
    ports.report({"address": "192.0.2.5", "listening": [item]})
    ports.report({"address": "192.0.2.5", "listening": [{**item, "seen": 13.0}]})
    events = [d for t, d in seen if t == "ports"]
    assert len(events) == 1
    assert events[0]["listening"] == [{**item, "process": ""}]
    assert ports.state()["listening"][0]["seen"] == 12.5  # the first sighting stays
    ports.report({"address": "192.0.2.5", "listening": []})
    assert [d["listening"] for t, d in seen if t == "ports"][-1] == []


@pytest.mark.parametrize(
    "body",
    [
        None,
        {"listening": "x"},
        {"listening": [{"proto": "sctp", "port": 1}]},
        {"listening": [{"proto": "tcp", "port": 0}]},
        {"listening": [{"proto": "tcp", "port": 80, "addr": "nowhere"}]},
        {"address": "sandbox", "listening": []},
        {"listening": [{"proto": "tcp", "port": p} for p in range(1, 300)]},
    ],
)
def test_bad_reports_are_refused(tmp_path: Path, body: Any) -> None:
    ports, _ = _ports(tmp_path)
    with pytest.raises(PortError):
        ports.report(body)


async def test_a_forward_relays_and_logs_an_inbound_flow(tmp_path: Path) -> None:
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        data = await reader.read(100)
        writer.write(b"echo " + data)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    ports, seen = _ports(tmp_path)
    ports.report({"address": "127.0.0.1", "listening": []})
    fwd = await ports.forward({"port": port, "host_port": 18080})
    assert fwd["socket"] == f"fwd-{port}.sock"
    assert (tmp_path / fwd["socket"]).stat().st_mode & 0o777 == 0o600
    assert await ports.forward({"port": port, "host_port": 1}) == fwd  # once per port
    reader, writer = await asyncio.open_unix_connection(str(tmp_path / fwd["socket"]))
    writer.write(b"hi")
    writer.write_eof()
    assert await asyncio.wait_for(reader.read(), 5) == b"echo hi"
    writer.close()
    for _ in range(50):
        logs = [d for t, d in seen if t == "log"]
        if logs:
            break
        await asyncio.sleep(0.05)
    [entry] = logs
    assert (entry["dport"], entry["verdict"], entry["sport"]) == (port, "allow", 18080)
    assert entry["reason"] == "inbound: forwarded from 127.0.0.1:18080"
    assert (entry["bytes_in"], entry["bytes_out"]) == (2, 7)
    server.close()
    ports.close()
    assert not (tmp_path / fwd["socket"]).exists()


async def test_a_forward_to_nothing_is_logged_denied(tmp_path: Path) -> None:
    ports, seen = _ports(tmp_path)
    fwd = await ports.forward({"port": 9, "host_port": 18081, "address": "127.0.0.1"})
    reader, writer = await asyncio.open_unix_connection(str(tmp_path / fwd["socket"]))
    assert await asyncio.wait_for(reader.read(), 5) == b""
    writer.close()
    for _ in range(50):
        if any(t == "log" for t, _ in seen):
            break
        await asyncio.sleep(0.05)
    [entry] = [d for t, d in seen if t == "log"]
    assert entry["verdict"] == "deny" and "nothing answers on 9" in entry["reason"]
    ports.close()


@pytest.mark.parametrize("body", [{"port": 0}, {"port": 80, "host_port": 70000},
                                  {"port": 80, "bind": "localhost"}, "80"])  # fmt: skip
async def test_bad_forwards_are_refused(tmp_path: Path, body: Any) -> None:
    ports, _ = _ports(tmp_path)
    with pytest.raises(PortError):
        await ports.forward(body)


def test_the_sandbox_may_answer_only_connections_the_gateway_opened() -> None:
    rules = ruleset(Interfaces("eth1", "172.30.0.2", 24, "eth0"))
    lines = rules.splitlines()
    reply = "-A INPUT -i eth1 -m conntrack --ctstate ESTABLISHED --ctdir REPLY -j ACCEPT"
    assert reply in lines
    reject = "-A INPUT -i eth1 -p tcp -j REJECT --reject-with tcp-reset"
    assert lines.index(reply) < lines.index(reject)
