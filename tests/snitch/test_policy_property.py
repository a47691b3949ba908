"""Property test: the indexed Policy agrees with a brute-force reference matcher.

The reference below is written straight from docs/rules.md, without the engine's
indexes, so a bug in the index (a missed bucket, a wrong suffix walk) shows up here.
"""

from __future__ import annotations

import fnmatch
import ipaddress
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from snitch.core.blocklist import Blocklist
from snitch.core.model import Action, Proto, Query, Rule

NOW = 1_700_000_000.0
NAMES = ["x.test", "a.x.test", "b.x.test", "a.b.x.test", "y.test", "A.X.Test."]
HOSTS = ["x.test", "a.x.test", "a.b.x.test", "y.test", "*.x.test", "*.b.x.test", "*.test"]
CIDRS = ["10.0.0.0/8", "10.1.0.0/16", "10.1.2.0/24", "10.1.2.3", "0.0.0.0/0",
         "2001:db8::/32", "2001:db8::1", "::/0"]  # fmt: skip
IPS = ["10.1.2.3", "10.1.2.4", "10.2.0.1", "192.0.2.1", "2001:db8::1", "2001:db8::2", "::1"]
PORTS = [(0, 0), (443, 443), (80, 80), (1, 1024), (400, 500)]
BLOCKED = ["x.test", "b.x.test", "10.1.0.0/16", "2001:db8::/48"]
NET_PROTOS = [p for p in Proto if p is not Proto.FILE]  # file rules: test_file_rules.py
EXES = ["/usr/bin/curl", "/usr/bin/*", "*/python3*"]


def pick(pool: list[Any], byte: int) -> Any:
    return pool[byte % len(pool)]


def rule_from_bytes(b: bytes, position: int) -> Rule:
    """One rule from 14 bytes: a single hypothesis draw each, so generation stays fast.

    Two rules in three are plain (global, no lifetime, no path), so that matches are
    common; the rest draw every lifetime/scope/path attribute.
    """
    proto = pick(NET_PROTOS, b[0])
    lo, hi = (0, 0) if proto in (Proto.DNS, Proto.ICMP) else pick(PORTS, b[1])
    exotic = b[13] % 3 == 0
    return Rule(
        action=pick(list(Action), b[2]),
        host=pick([None, None, *HOSTS], b[3]),
        cidr=pick([None] * 14 + CIDRS, b[4]) if b[3] % 9 < 2 else pick([None] * 9 + CIDRS, b[4]),
        port_lo=lo,
        port_hi=hi,
        proto=proto,
        scope=pick(["global", "profile:p", "image:i", "label:team=ci"], b[5])
        if exotic
        else "global",
        priority=pick([0, 0, 0, 1, -1], b[6]),
        path_prefix=pick([None, "/v1"], b[7]) if exotic else None,
        method=pick([None, "GET", "GET,HEAD"], b[7] >> 2) if exotic else None,
        exe=pick([None, None, *EXES], b[13] >> 2) if exotic else None,
        once_key=pick([None, "k1", "k2"], b[8]) if exotic else None,
        session=pick([None, "s1"], b[9]) if exotic else None,
        expires_at=pick([None, NOW - 1, NOW, NOW + 100], b[10]) if exotic else None,
        enabled=b[11] % 5 != 4,
        created=NOW,
        id=1000 * b[12] + position + 1,  # distinct, and not in list order
    )


rule_sets = st.lists(st.binary(min_size=14, max_size=14), max_size=12).map(
    lambda bs: [rule_from_bytes(b, i) for i, b in enumerate(bs)]
)


@st.composite
def queries(draw: st.DrawFn) -> Query:
    b = draw(st.binary(min_size=12, max_size=12))
    proto = pick(NET_PROTOS, b[0])
    ctx: dict[str, Any] = {
        "profile": pick([None, "p", "i"], b[1]),
        "image": pick([None, "i", "p"], b[2]),
        "session": pick([None, "s1", "s2"], b[3]),
        "labels": pick([(), ("team=ci",), ("team=web", "x=y")], b[10]),
        "exe": pick([None, "/usr/bin/curl", "/usr/bin/python3.11", "/bin/sh"], b[11]),
    }
    if proto is Proto.DNS:
        return Query(proto, None, 0, (pick(NAMES, b[4]),), **ctx)
    names = tuple(pick(NAMES, x) for x in b[4 : 4 + b[5] % 4])
    return Query(
        proto,
        pick([None, *IPS], b[6]),
        pick([0, 443, 80, 450, 8080], b[7]),
        names,
        flow=pick([None, "k1", "k2"], b[8]),
        path=pick([None, None, "/v1/a", "/v2"], b[9]),
        method=pick([None, "GET", "POST", "HEAD"], b[9] >> 2),
        **ctx,
    )


# -- the reference matcher -----------------------------------------------------------------


def ref_matches(r: Rule, q: Query, now: float) -> bool:
    if not r.enabled or (r.expires_at is not None and now >= r.expires_at):
        return False
    if r.once_key is not None and q.flow != r.once_key:
        return False
    if r.session is not None and q.session != r.session:
        return False
    if r.scope.startswith("profile:") and q.profile != r.scope[8:]:
        return False
    if r.scope.startswith("image:") and q.image != r.scope[6:]:
        return False
    if r.scope.startswith("label:") and r.scope[6:] not in q.labels:
        return False
    if r.method is not None and q.method not in r.method.split(","):
        return False
    if r.exe is not None and (q.exe is None or not fnmatch.fnmatchcase(q.exe, r.exe)):
        return False
    if r.path_prefix is not None and (q.path is None or not q.path.startswith(r.path_prefix)):
        return False
    names = [n.lower().rstrip(".") for n in q.names]
    if r.host is not None:
        if r.host.startswith("*."):
            if not any(n.endswith(r.host[1:]) for n in names):
                return False
        elif r.host not in names:
            return False
    if r.cidr is not None and (
        q.dst is None or ipaddress.ip_address(q.dst) not in ipaddress.ip_network(r.cidr)
    ):
        return False
    if q.proto is Proto.DNS:
        if r.action is Action.ALLOW:
            return r.proto in (Proto.DNS, Proto.ANY, Proto.TCP, Proto.UDP)
        return r.proto in (Proto.DNS, Proto.ANY) and r.port_lo == 0
    if r.proto is Proto.DNS:
        return False
    if r.proto is not Proto.ANY and q.proto is not Proto.ANY and r.proto is not q.proto:
        return False
    return r.port_lo == 0 or r.port_lo <= q.port <= r.port_hi


def ref_key(r: Rule) -> tuple[int, ...]:
    if r.cidr is not None:
        dest = (3, ipaddress.ip_network(r.cidr).prefixlen)
    elif r.host is not None and r.host.startswith("*."):
        dest = (1, len(r.host[2:].split(".")))
    elif r.host is not None:
        dest = (2, 0)
    else:
        dest = (0, 0)
    width = 65536 if r.port_lo == 0 else r.port_hi - r.port_lo + 1
    return (r.priority, *dest, -width, int(r.proto is not Proto.ANY),
            len(r.path_prefix or ""), int(r.method is not None), int(r.exe is not None),
            int(r.action is Action.DENY))  # fmt: skip


def ref_blocked(blocked: list[str], q: Query) -> list[tuple[int, ...]]:
    """Keys of the virtual deny rules the blocklist contributes."""
    keys: list[tuple[int, ...]] = []
    names = [n.lower().rstrip(".") for n in q.names]
    for entry in blocked:
        if "/" in entry:
            net = ipaddress.ip_network(entry)
            if q.dst is not None and ipaddress.ip_address(q.dst) in net:
                keys.append((0, 3, net.prefixlen, -65536, 0, 0, 0, 0, 1))
        elif any(n == entry or n.endswith("." + entry) for n in names):
            keys.append((0, 1, len(entry.split(".")), -65536, 0, 0, 0, 0, 1))
    return keys


@settings(max_examples=1000, deadline=None)
@given(rule_sets, queries(), st.lists(st.sampled_from(BLOCKED), unique=True))
def test_policy_agrees_with_reference(rs: list[Rule], q: Query, blocked: list[str]) -> None:
    from snitch.core.policy import Policy

    policy = Policy(rs, Blocklist(blocked) if blocked else None)
    # (key, -position, action, id); the blocklist loses full ties to real rules
    ranked = [(ref_key(r), -i, r.action, r.id) for i, r in enumerate(rs) if ref_matches(r, q, NOW)]
    ranked += [(k, -(10**9), Action.DENY, None) for k in ref_blocked(blocked, q)]
    ranked.sort(key=lambda t: (t[0], t[1]), reverse=True)
    decision = policy.decide(q, now=NOW)
    if not ranked:
        assert decision is None
    else:
        assert decision is not None
        assert (decision.action, decision.rule_id) == (ranked[0][2], ranked[0][3])
    explained = policy.explain(q, now=NOW)
    assert explained.decision == decision
    assert [m.rule.id for m in explained.matches if m.rule.id is not None] == [
        t[3] for t in ranked if t[3] is not None
    ]
