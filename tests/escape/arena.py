"""The escape arena (issue 7): a hostile script in the sandbox tries every way out it can
think of, and observers record what got where.

Two sessions run side by side against the demo internet, each running ``hostile.py``
(one line of JSON per attempt):

- **A**, enforce mode, a policy that allows ``api.example.test`` (tcp 80, 443) and UDP
  echo and ping to the demo internet's main address; everything else is denied;
- **B**, audit mode (the gateway allows everything): what is left is the topology.

Observers that prove a packet did *not* arrive: a sniffer in the demo internet's
namespace, one in each sandbox's namespace (for the other session), one on a target
container on a network of its own (IPv4 and IPv6), packet sockets on both session
bridges on the host, and host listeners on the bridge addresses. Each one has a
positive control.

This module holds what the arena saw (``Arena``, one ``Side`` per session) and what the
tests share; ``arena_run.py`` runs it (once per test session: the ``arena`` fixture in
conftest.py), and the ``test_escape*.py`` modules read the results, one kind of way out
each. docs/security.md has the table.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sandbox.internet import DemoInternet
from sandbox.session import Session
from snitch.core.logentry import EntryKind, LogEntry

LISTEN_PORT = 9000  # each sandbox listens here for the other session
HOST_PORT = 47123  # host listeners on the bridge addresses
FLOOD = 3000
GARBAGE = 5000
PATTERNS = {
    "marker": b"CODERUN",
    "tun": b"coderun-tun",
    "smuggle": b"coderun-smuggle",
    "dotted": b"\x0bapi.example\x04test",
    "direct": b"coderun-direct",
    "spoof": b"CODERUN-spoof",
    "flood": b"CODERUN-flood",
    "big": b"CODERUN-big",
    "icmp": b"CODERUN-icmp",
    "ok": b"CODERUN-ok",
    "udplite": b"CODERUN-udplite",
    "other": b"CODERUN-other",
}
P = {name: i for i, name in enumerate(PATTERNS)}


def policy(internet: DemoInternet) -> str:
    return f"""
[[rule]]
action = "allow"
host = "api.example.test"
port = 80
proto = "tcp"

[[rule]]
action = "allow"
host = "api.example.test"
port = 443
proto = "tcp"

[[rule]]
action = "allow"
cidr = "{internet.ip}/32"
port = 7
proto = "udp"

[[rule]]
action = "allow"
cidr = "{internet.ip}/32"
proto = "icmp"
"""


@dataclass
class Side:
    """One session of the arena and what was seen of it."""

    session: Session
    ctl: Path
    results: dict[str, dict[str, Any]] = field(default_factory=dict)
    log: list[LogEntry] = field(default_factory=list)
    bridge: str = ""
    bridge_dev: str = ""
    gateway_egress: str = ""
    holder_mac: str = ""
    gateway_mac: str = ""
    bridge_frames: list[dict[str, Any]] = field(default_factory=list)
    ns_packets: list[dict[str, Any]] = field(default_factory=list)
    host_hits: list[dict[str, Any]] = field(default_factory=list)

    def r(self, attack: str) -> dict[str, Any]:
        assert attack in self.results, f"{attack} did not run: {sorted(self.results)}"
        return self.results[attack]

    def flows(self, **match: object) -> list[LogEntry]:
        return [
            e
            for e in self.log
            if e.kind is EntryKind.FLOW and all(getattr(e, k) == v for k, v in match.items())
        ]

    def events(self, text: str) -> list[LogEntry]:
        return [e for e in self.log if e.kind is EntryKind.EVENT and text in e.message]

    @property
    def addresses(self) -> set[str]:
        return {self.session.sandbox_ip, self.session.gateway_ip, self.gateway_egress}


@dataclass
class Arena:
    a: Side
    b: Side
    internet: DemoInternet
    nonce: str
    evil: str
    tracker: str
    other: str
    target: str
    target_v6: str
    internet_packets: list[dict[str, Any]] = field(default_factory=list)
    target_packets: list[dict[str, Any]] = field(default_factory=list)
    internet_log: str = ""
    gateway_alive_after: bool = False
    queue_stats: str = ""
    embedded_dns_control: str = ""
    sandbox_attrs: dict[str, Any] = field(default_factory=dict)
    control_host_hit: bool = False
    api_socket_existed: bool = False
    left: list[str] = field(default_factory=list)

    def internet_to(self, dst: str, **match: object) -> list[dict[str, Any]]:
        return [
            p
            for p in self.internet_packets
            if p["dst"] == dst and all(p.get(k) == v for k, v in match.items())
        ]

    def with_pattern(self, name: str, packets: list[dict[str, Any]] | None = None) -> list[Any]:
        return [
            p
            for p in (self.internet_packets if packets is None else packets)
            if P[name] in p["hits"]
        ]


def dump(arena: Arena) -> str:
    def side(x: Side) -> dict[str, Any]:
        return {
            "results": x.results,
            "log": [e.to_dict() for e in x.log],
            "ns_packets": x.ns_packets,
            "bridge_frames": x.bridge_frames,
            "host_hits": x.host_hits,
            "addresses": sorted(x.addresses),
            "bridge": x.bridge,
            "holder_mac": x.holder_mac,
            "gateway_mac": x.gateway_mac,
        }

    return json.dumps(
        {
            "a": side(arena.a),
            "b": side(arena.b),
            "internet": arena.internet.ip,
            "internet_packets": arena.internet_packets,
            "target_packets": arena.target_packets,
            "queue": arena.queue_stats,
        },
        indent=1,
        default=str,
    )


def failed(result: dict[str, Any], *codes: int) -> bool:
    """The attempt failed (with one of ``codes`` when given)."""
    return not result["ok"] and (not codes or result["errno"] in codes)
