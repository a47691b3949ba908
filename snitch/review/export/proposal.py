"""From what a session did to a proposed allowlist (``coderun rules from-session``).

Each allowed flow becomes ``allow NAME:PORT/PROTO`` where a name is known (the names
the sandbox looked up that led to the address; else the first name known for it), or
``allow ADDRESS:PORT/PROTO``. An allowed lookup that led to no allowed flow becomes
``allow NAME/dns``. Denied or undecided traffic proposes nothing. Rules the store already
has, or that its permanent rules already allow, are left out.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from snitch.core.grammar import normalize_cidr, normalize_host
from snitch.core.logentry import EntryKind, LogEntry
from snitch.core.model import Action, Proto, Query, Rule
from snitch.core.policy import Policy

_FLOW_PROTOS = {"tcp": Proto.TCP, "udp": Proto.UDP, "icmp": Proto.ICMP}

RuleKey = tuple[str | None, str | None, int, int, str]


def rule_key(rule: Rule) -> RuleKey:
    return (rule.host, rule.cidr, rule.port_lo, rule.port_hi, str(rule.proto))


def _host(name: str) -> str | None:
    try:
        return normalize_host(name)
    except ValueError:
        return None


def _permanent(rules: Iterable[Rule], now: float) -> list[Rule]:
    return [
        r
        for r in rules
        if r.enabled
        and r.once_key is None
        and r.session is None
        and (r.expires_at is None or r.expires_at > now)
    ]


def propose_rules(
    entries: Iterable[LogEntry],
    existing: list[Rule],
    session_id: str,
    *,
    now: float | None = None,
) -> list[Rule]:
    """The allow rules that would let a run do again what this one was allowed to do."""
    t = time.time() if now is None else now
    entries = list(entries)
    looked_up = {
        h
        for e in entries
        if e.kind is EntryKind.DNS and e.verdict == "allow" and (h := _host(e.qname))
    }
    found: dict[RuleKey, tuple[Rule, Query, int]] = {}

    def add(rule: Rule, query: Query) -> None:
        key = rule_key(rule)
        old = found.get(key)
        found[key] = (rule, query, (old[2] if old else 0) + 1)

    named: set[str] = set()
    for e in entries:
        if e.kind is not EntryKind.FLOW or e.verdict != "allow":
            continue
        proto = _FLOW_PROTOS.get(e.proto)
        if proto is None or not e.dst:
            continue
        port = e.dport if proto is not Proto.ICMP else 0
        names = [h for n in e.names if (h := _host(n))]
        chosen = [n for n in names if n in looked_up] or names[:1]
        query = Query(proto, e.dst, port, tuple(names))
        for n in chosen:
            named.add(n)
            add(Rule(Action.ALLOW, host=n, port_lo=port, port_hi=port, proto=proto), query)
        if not chosen:
            try:
                cidr = normalize_cidr(e.dst)
            except ValueError:
                continue
            add(Rule(Action.ALLOW, cidr=cidr, port_lo=port, port_hi=port, proto=proto), query)
    for e in entries:
        if e.kind is EntryKind.DNS and e.verdict == "allow":
            h = _host(e.qname)
            if h and h not in named:
                add(Rule(Action.ALLOW, host=h, proto=Proto.DNS), Query(Proto.DNS, names=(h,)))
    have = {rule_key(r) for r in existing if r.action is Action.ALLOW}
    policy = Policy(_permanent(existing, t))
    out = []
    for key, (rule, query, count) in found.items():
        if key in have:
            continue
        decision = policy.decide(query, now=t)
        if decision is not None and decision.action is Action.ALLOW:
            continue
        rule.source = f"session:{session_id}"
        rule.note = f"seen {count}x in session {session_id}"
        out.append(rule)
    return sorted(out, key=lambda r: (r.host or r.cidr or "", str(r.proto), r.port_lo))


def format_diff(
    proposed: list[Rule],
    existing: list[Rule],
    *,
    now: float | None = None,
    describe: Callable[[Rule], str] = Rule.describe,
) -> str:
    """The current permanent rules as context lines and the proposed ones as ``+`` lines
    (each rule as ``describe`` shows it: the CLI passes one that escapes it)."""
    t = time.time() if now is None else now
    current = _permanent(existing, t)
    lines = [
        f"--- rules now ({len(current)})",
        f"+++ rules with the proposal ({len(current) + len(proposed)})",
    ]
    lines += [f"  {describe(r)}" for r in current]
    lines += [f"+ {describe(r)}" for r in proposed]
    return "\n".join(lines) + "\n"
