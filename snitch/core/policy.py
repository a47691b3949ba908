"""The policy engine: which rule decides a connection or a DNS lookup.

See docs/rules.md for the precedence table. In short, among the rules that match a
Query the winner has the largest key::

    (priority, destination kind, destination detail, -port range width,
     specific proto, path prefix length, deny)

with destination kind address/CIDR > exact host > wildcard domain > any, and detail the
prefix length (CIDR) or the number of labels of the suffix (wildcard). A full tie goes to
the earlier rule (lower id, or earlier in the list).
"""

from __future__ import annotations

import dataclasses
import functools
import ipaddress
import math
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from snitch.core.blocklist import BlocklistLookup
from snitch.core.grammar import (
    IPNetwork,
    Origin,
    check_scope,
    format_port,
    is_address,
    is_synthetic_net,
    normalize_cidr,
    normalize_host,
    normalize_name,
    parse_port,
)
from snitch.core.model import Action, Decision, Proto, Query, Rule

DEST_ANY, DEST_WILDCARD, DEST_HOST, DEST_CIDR = 0, 1, 2, 3
DEST_KIND_NAMES = {0: "any destination", 1: "wildcard domain", 2: "exact host", 3: "address/CIDR"}
_DNS_ALLOW_PROTOS = frozenset({Proto.DNS, Proto.ANY, Proto.TCP, Proto.UDP})
_DNS_DENY_PROTOS = frozenset({Proto.DNS, Proto.ANY})
_LAST = 1 << 62
_MISS = object()
CACHE_SIZE = 4096  # decisions remembered per Policy (cleared when full)


# -- field validation, shared by the policy-file loader and the CLI ------------------------


def check_rule(rule: Rule) -> None:
    """Raise ValueError if ``rule`` has a field the engine cannot use."""
    if rule.host is not None:
        normalize_host(rule.host)
    if rule.cidr is not None:
        normalize_cidr(rule.cidr)
    if (rule.port_lo, rule.port_hi) != (0, 0):
        parse_port(f"{rule.port_lo}-{rule.port_hi}")
        if rule.proto in (Proto.DNS, Proto.ICMP):
            raise ValueError(f"a port makes no sense with proto {rule.proto}")
    check_scope(rule.scope)
    if rule.path_prefix is not None and not rule.path_prefix.startswith("/"):
        raise ValueError(f"bad path {rule.path_prefix!r} (must start with /)")


def endpoint_query(
    host: str, port: int, proto: Proto, *, profile: str | None = None, image: str | None = None,
    session: str | None = None, path: str | None = None,
) -> Query:  # fmt: skip
    """The query for a connection to ``host:port`` (``rules explain``, the API's explain): an
    address is matched by address rules, a name as if the sandbox connected by that name;
    a DNS lookup has no port."""
    dst, names = (host, ()) if is_address(host) else (None, (host,))
    port = 0 if proto is Proto.DNS else port
    return Query(proto, dst, port, names, profile, image, session, None, path)


# -- the engine --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Match:
    """A rule that matched a query, and on what."""

    rule: Rule
    why: str

    def to_dict(self) -> dict[str, Any]:
        return {"rule": self.rule.to_dict(), "describe": self.rule.describe(), "why": self.why}


@dataclass(frozen=True, slots=True)
class Explanation:
    """Every rule that matched, in precedence order (the deciding one first)."""

    query: Query
    decision: Decision | None
    matches: tuple[Match, ...]
    reason: str  # why the first match beat the second one

    @property
    def rule(self) -> Rule | None:
        return self.matches[0].rule if self.matches else None

    def to_dict(self) -> dict[str, Any]:
        q = {f.name: getattr(self.query, f.name) for f in dataclasses.fields(self.query)}
        q["proto"], q["names"] = str(self.query.proto), list(self.query.names)
        return {
            "query": q,
            "decision": self.decision.to_dict() if self.decision else None,
            "reason": self.reason,
            "matches": [m.to_dict() for m in self.matches],
        }


class _Entry:
    """A rule with everything the matcher needs precomputed."""

    __slots__ = ("rule", "rank", "decision", "host", "wild", "scope")

    def __init__(self, rule: Rule, order: int, net: IPNetwork | None = None) -> None:
        self.rule = rule
        self.host: str | None = None  # without the "*." of a wildcard
        self.wild = False
        if rule.host is not None:
            h = normalize_name(rule.host)
            self.wild = h.startswith("*.")
            self.host = h[2:] if self.wild else h
        kind, _, name = rule.scope.partition(":")
        self.scope: tuple[str, str] | None = None if rule.scope == "global" else (kind, name)
        self.rank: tuple[int, ...] = (*precedence_key(rule, net), -order)
        self.decision = Decision(rule.action, rule.id, rule.describe(), Origin.RULE)


def precedence_key(rule: Rule, net: IPNetwork | None = None) -> tuple[int, ...]:
    """The rule's precedence key; among matching rules the largest one decides."""
    if rule.cidr is not None:
        if net is None:
            net = ipaddress.ip_network(rule.cidr, strict=False)
        dest, detail = DEST_CIDR, net.prefixlen
    elif rule.host is not None:
        h = normalize_name(rule.host)
        wild = h.startswith("*.")
        dest, detail = (DEST_WILDCARD, h.count(".")) if wild else (DEST_HOST, 0)
    else:
        dest, detail = DEST_ANY, 0
    width = rule.port_hi - rule.port_lo + 1 if rule.port_lo else 65536
    return (rule.priority, dest, detail, -width, int(rule.proto is not Proto.ANY),
            len(rule.path_prefix or ""), int(rule.action is Action.DENY))  # fmt: skip


def proto_port_matches(rule: Rule, q: Query) -> bool:
    """The protocol/port part of matching, including the DNS-lookup semantics."""
    if q.proto is Proto.DNS:
        if rule.action is Action.ALLOW:
            return rule.proto in _DNS_ALLOW_PROTOS
        return rule.proto in _DNS_DENY_PROTOS and rule.port_lo == 0
    if rule.proto is Proto.DNS:
        return False
    if rule.proto is not Proto.ANY and q.proto is not Proto.ANY and rule.proto is not q.proto:
        return False
    return rule.port_lo == 0 or rule.port_lo <= q.port <= rule.port_hi


@functools.lru_cache(maxsize=4096)
def _address(text: str) -> tuple[int, int] | None:
    """(version, integer) of an address, cached: the same few addresses recur per flow."""
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        return None
    return addr.version, int(addr)


class Policy:
    """An immutable, indexed rule set. Build a new one when the rules change.

    ``clock`` supplies the time used for expiry (tests inject a fixed one); ``decide`` and
    ``explain`` also take an explicit ``now``.
    """

    def __init__(
        self,
        rules: Iterable[Rule],
        blocklist: BlocklistLookup | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.blocklist = blocklist
        self.clock = clock
        self.rules: list[Rule] = []
        self._exact: dict[str, list[_Entry]] = {}
        self._wild: dict[str, list[_Entry]] = {}
        self._any: list[_Entry] = []
        self._bl_cache: dict[str, _Entry] = {}
        self._cache: dict[Query, Decision | None] = {}
        self._cache_until = -math.inf  # the first decide computes the next expiry
        # version -> [(shift, {network_int >> shift: entries})], longest prefix first
        self._nets: dict[int, list[tuple[int, dict[int, list[_Entry]]]]] = {}
        buckets: dict[tuple[int, int], dict[int, list[_Entry]]] = {}
        for order, rule in enumerate(rules):
            self.rules.append(rule)
            if not rule.enabled:
                continue
            if rule.cidr is not None:
                net = ipaddress.ip_network(rule.cidr, strict=False)
                if is_synthetic_net(net):
                    continue  # never a rule's target (see SYNTHETIC_NET), even if stored
                shift = net.max_prefixlen - net.prefixlen
                bucket = buckets.setdefault((net.version, net.prefixlen), {})
                bucket.setdefault(int(net.network_address) >> shift, []).append(
                    _Entry(rule, order, net)
                )
                continue
            e = _Entry(rule, order)
            if e.host is None:
                self._any.append(e)
            elif e.wild:
                self._wild.setdefault(e.host, []).append(e)
            else:
                self._exact.setdefault(e.host, []).append(e)
        for (version, plen), bucket in sorted(buckets.items(), key=lambda kv: -kv[0][1]):
            bits = 32 if version == 4 else 128
            self._nets.setdefault(version, []).append((bits - plen, bucket))

    def _candidates(self, q: Query, names: tuple[str, ...]) -> Iterator[tuple[_Entry, str]]:
        """(entry, what it matched on) for every rule whose destination part matches."""
        for n in names:
            for e in self._exact.get(n, ()):
                yield e, n
            if self._wild:
                i = n.find(".")
                while i >= 0:
                    for e in self._wild.get(n[i + 1 :], ()):
                        yield e, n
                    i = n.find(".", i + 1)
        for e in self._any:
            yield e, ""
        if q.dst is not None and self._nets:
            parsed = _address(q.dst)
            if parsed is None:
                return  # not an address: no address rule can match
            version, value = parsed
            for shift, bucket in self._nets.get(version, ()):
                for e in bucket.get(value >> shift, ()):
                    host = e.host
                    if host is None or any(
                        (n.endswith("." + host) if e.wild else n == host) for n in names
                    ):
                        yield e, q.dst

    def _applies(self, e: _Entry, q: Query, now: float) -> bool:
        r = e.rule
        if r.expires_at is not None and r.expires_at <= now:
            return False
        if r.once_key is not None and r.once_key != q.flow:
            return False
        if r.session is not None and r.session != q.session:
            return False
        if e.scope is not None:
            kind, name = e.scope
            if (q.profile if kind == "profile" else q.image if kind == "image" else None) != name:
                return False
        if r.path_prefix is not None and (q.path is None or not q.path.startswith(r.path_prefix)):
            return False
        return proto_port_matches(r, q)

    def _blocklist_entry(self, target: str, is_net: bool) -> _Entry:
        e = self._bl_cache.get(target)
        if e is None:
            if len(self._bl_cache) >= 4096:
                self._bl_cache.clear()
            e = self._bl_cache[target] = _blocklist_entry(target, is_net)
        return e

    def _matching(self, q: Query, now: float) -> list[tuple[_Entry, str]]:
        names = tuple([normalize_name(n) for n in q.names])
        found = [(e, on) for e, on in self._candidates(q, names) if self._applies(e, q, now)]
        bl = self.blocklist
        if bl is not None:
            hits: set[str] = set()
            for n in names:
                hit = bl.match_name(n)
                if hit is not None and hit not in hits:
                    hits.add(hit)
                    found.append((self._blocklist_entry(hit, False), n))
            if q.dst is not None:
                net = bl.match_ip(q.dst)
                if net is not None:
                    found.append((self._blocklist_entry(net, True), q.dst))
        return found

    def decide(self, query: Query, *, now: float | None = None) -> Decision | None:
        """The deciding rule's verdict, or None when no rule matches (apply the default).

        Answers are cached per query until the next rule expiry (the rules of a Policy
        never change; a reload builds a new one), so a repeated flow costs one lookup.
        """
        if now is not None:
            return self._decide(query, now)
        now = self.clock()
        if now < self._cache_until:
            hit = self._cache.get(query, _MISS)
            if hit is not _MISS:
                return hit  # type: ignore[return-value]
        else:
            self._cache.clear()
            self._cache_until = min(
                (
                    r.expires_at
                    for r in self.rules
                    if r.expires_at is not None and r.expires_at > now
                ),
                default=math.inf,
            )
        decision = self._decide(query, now)
        if len(self._cache) >= CACHE_SIZE:
            self._cache.clear()
        self._cache[query] = decision
        return decision

    @property
    def valid_until(self) -> float:
        """The next rule expiry after the last ``decide`` (-inf before the first)."""
        return self._cache_until

    def _decide(self, query: Query, now: float) -> Decision | None:
        found = self._matching(query, now)
        if not found:
            return None
        best = found[0][0]
        for e, _ in found:
            if e.rank > best.rank:
                best = e
        return best.decision

    def explain(self, query: Query, *, now: float | None = None) -> Explanation:
        """Like ``decide`` but with every matching rule, best first, and the reasons."""
        found: list[tuple[_Entry, str]] = []
        seen: set[int] = set()
        for e, on in self._matching(query, self.clock() if now is None else now):
            if id(e) not in seen:  # a rule can match through several names
                seen.add(id(e))
                found.append((e, on))
        found.sort(key=lambda m: m[0].rank, reverse=True)
        matches = tuple(Match(e.rule, _why(e, on, query)) for e, on in found)
        if not found:
            return Explanation(query, None, (), "no rule matches; the mode's default applies")
        reason = _win_reason(found[0][0], found[1][0] if len(found) > 1 else None)
        return Explanation(query, found[0][0].decision, matches, reason)


def _blocklist_entry(target: str, is_net: bool) -> _Entry:
    """A blocklist hit as a virtual deny rule (any port/proto, priority 0) that loses full
    ties: a network ranks as a CIDR rule, a domain as a wildcard that also covers the apex."""
    e = _Entry.__new__(_Entry)  # built directly: this runs for every blocklisted lookup
    e.scope, e.decision = None, Decision(Action.DENY, None, f"blocklist {target}", Origin.RULE)
    if is_net:
        e.host, e.wild, e.rule = None, False, Rule(Action.DENY, cidr=target, created=0)
        e.rank = (0, DEST_CIDR, int(target.rsplit("/", 1)[1]), -65536, 0, 0, 1, -_LAST)
    else:
        e.host, e.wild, e.rule = target, True, Rule(Action.DENY, host=target, created=0)
        e.rank = (0, DEST_WILDCARD, target.count(".") + 1, -65536, 0, 0, 1, -_LAST)
    e.rule.source, e.rule.note = "blocklist", "blocklist: the entry and all it covers"
    return e


def _why(e: _Entry, on: str, q: Query) -> str:
    r = e.rule
    if r.source == "blocklist" and r.id is None:
        what = f"blocklisted {e.host or r.cidr} covers {on}"
    elif r.cidr is not None:
        what = f"{r.cidr} contains {on}"
    elif r.host is not None:
        what = f"{on} is a subdomain of {e.host}" if e.wild else f"exact host {on}"
    else:
        what = "any destination"
    if q.proto is Proto.DNS and r.action is Action.ALLOW and r.proto is not Proto.DNS:
        what += f" (a name you may reach over {r.proto} may be resolved)"
    parts = [what, f"port {format_port(r.port_lo, r.port_hi)}", f"proto {r.proto}"]
    if r.priority:
        parts.append(f"priority {r.priority}")
    if r.scope != "global":
        parts.append(f"scope {r.scope}")
    if r.path_prefix:
        parts.append(f"path {r.path_prefix}*")
    return ", ".join(parts)


def _win_reason(best: _Entry, second: _Entry | None) -> str:
    label = f"rule {best.rule.id}" if best.rule.id is not None else best.decision.reason
    if second is None:
        return f"{label} is the only matching rule"
    a, b = best.rank, second.rank
    reasons = [
        f"a higher priority ({a[0]} > {b[0]})",
        f"a more specific destination ({DEST_KIND_NAMES[a[1]]} beats {DEST_KIND_NAMES[b[1]]})",
        f"a longer {'prefix' if a[1] == DEST_CIDR else 'domain suffix'} ({a[2]} > {b[2]})",
        "a narrower port range",
        "a specific protocol (beats any)",
        "a longer path prefix",
        "deny (deny beats allow at equal specificity)",
    ]
    for i, text in enumerate(reasons):
        if a[i] != b[i]:
            return f"{label} wins: {text}"
    return f"{label} wins a full tie by being the earlier rule"
