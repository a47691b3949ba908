"""Rules and name -> address maps that exercise every branch of the exporters."""

from __future__ import annotations

from snitch.core.model import Action, Proto, Rule


def sample_rules() -> list[Rule]:
    a, d = Action.ALLOW, Action.DENY
    return [
        Rule(a, host="api.example.test", port_lo=443, port_hi=443, proto=Proto.TCP, id=1),
        Rule(a, host="*.cdn.test", port_lo=8000, port_hi=8100, proto=Proto.ANY, id=2),
        Rule(d, cidr="203.0.113.0/24", id=3),
        Rule(a, cidr="10.0.0.0/8", port_lo=53, port_hi=53, proto=Proto.UDP, id=4),
        Rule(d, host="ads.example.test", id=5),
        Rule(a, host="ping.test", proto=Proto.ICMP, id=6),
        Rule(a, host="gone.test", port_lo=443, port_hi=443, proto=Proto.TCP, id=7),
        Rule(a, host="lookup-only.test", proto=Proto.DNS, id=8),
        Rule(a, cidr="2001:db8:1::/48", port_lo=22, port_hi=22, proto=Proto.TCP, id=9),
        Rule(d, cidr="10.9.0.0/16", id=10),
        Rule(a, host="many.test", port_lo=443, port_hi=443, proto=Proto.TCP, id=11),
        Rule(a, proto=Proto.TCP, port_lo=9418, port_hi=9418, id=12),
        Rule(a, host="once.test", once_key="tcp:1:2->3:4", id=13),
        Rule(a, host="path.test", path_prefix="/v1/", id=14),
        Rule(a, host="off.test", enabled=False, id=15),
        Rule(d, host="ads.example.test", proto=Proto.DNS, id=16),
        Rule(a, host="prio.test", priority=5, scope="profile:ci", id=17),
    ]


def sample_resolutions() -> dict[str, list[str]]:
    return {
        "api.example.test": ["198.51.100.7", "2001:db8::7"],
        "a.cdn.test": ["198.51.100.20"],
        "b.b.cdn.test": ["198.51.100.21", "198.51.100.20"],
        "ads.example.test": ["203.0.113.9", "192.0.2.66", "10.9.1.1"],
        "ping.test": ["192.0.2.1", "2001:db8::1"],
        "many.test": [f"192.0.2.{i}" for i in range(100, 106)],
        "prio.test": ["198.51.100.99"],
    }
