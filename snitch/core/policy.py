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

import fnmatch
import functools
import ipaddress
import math
import time
from collections.abc import Callable, Iterable, Iterator

from snitch.core.blocklist import BlocklistLookup
from snitch.core.explain import NO_MATCH, Explanation, Match, match_why
from snitch.core.grammar import (
    IPNetwork,
    Origin,
    check_scope,
    is_synthetic_net,
    normalize_cidr,
    normalize_host,
    normalize_name,
    parse_port,
)
from snitch.core.model import Action, Decision, Proto, Query, Rule
from snitch.core.pathgrammar import normalize_methods, path_glob_matches
from snitch.core.precedence import DEST_CIDR, DEST_WILDCARD, precedence_key, win_reason

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
    if rule.proto is Proto.FILE:
        _check_file_rule(rule)
        return
    if rule.file is not None or rule.access is not None:
        raise ValueError("a file path or access needs a file rule (allow-file / deny-file)")
    if rule.path_prefix is not None and not rule.path_prefix.startswith("/"):
        raise ValueError(f"bad path {rule.path_prefix!r} (must start with /)")
    if rule.method is not None and rule.method != normalize_methods(rule.method):
        raise ValueError(f"bad method list {rule.method!r} (want e.g. GET,HEAD in upper case)")
    if rule.exe is not None and not rule.exe.startswith(("/", "*")):
        raise ValueError(f"bad executable {rule.exe!r} (want an absolute path or a glob)")


def is_request_rule(rule: Rule) -> bool:
    """A rule about HTTP requests (a URL path prefix or methods), not bare connections."""
    return rule.path_prefix is not None or rule.method is not None


FILE_ACCESS = ("read", "write")


def _check_file_rule(rule: Rule) -> None:
    if rule.host is not None or rule.cidr is not None or rule.port_lo or rule.path_prefix:
        raise ValueError("a file rule has a path glob, not a host, address, port or URL path")
    if rule.method is not None:
        raise ValueError("a file rule has no HTTP method")
    if not rule.file or "\0" in rule.file:
        raise ValueError("a file rule needs a path glob (e.g. ~/.aws/* or **/.env)")
    if rule.file != "~" and not rule.file.startswith(("/", "~/", "*")):
        raise ValueError(
            f"bad path glob {rule.file!r}: paths are matched whole, so a glob starts with /, ~/"
            " or * (e.g. **/.env for .env in any folder)"
        )
    if rule.access is not None and rule.access not in FILE_ACCESS:
        raise ValueError(f"bad access {rule.access!r} (want read or write)")
    if rule.exe is not None and not rule.exe.startswith(("/", "*")):
        raise ValueError(f"bad executable {rule.exe!r} (want an absolute path or a glob)")


# -- the engine --------------------------------------------------------------------------


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


def proto_port_matches(rule: Rule, q: Query) -> bool:
    """The protocol/port part of matching, including the DNS-lookup semantics. File rules
    match file queries only, and network rules (``any`` included) network queries only."""
    if (rule.proto is Proto.FILE) is not (q.proto is Proto.FILE):
        return False
    if q.proto is Proto.FILE:
        return True
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
            if kind == "label":
                if name not in q.labels:
                    return False
            elif (q.profile if kind == "profile" else q.image if kind == "image" else None) != name:
                return False
        if r.path_prefix is not None and (q.path is None or not q.path.startswith(r.path_prefix)):
            return False
        if r.method is not None and (q.method is None or q.method not in r.method.split(",")):
            return False
        if r.exe is not None and (q.exe is None or not fnmatch.fnmatchcase(q.exe, r.exe)):
            return False
        if r.file is not None and (q.file is None or not path_glob_matches(r.file, q.file)):
            return False
        if r.access is not None and q.access != r.access:
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
        matches = tuple(Match(e.rule, match_why(e.rule, e.host, e.wild, on, query))
                        for e, on in found)  # fmt: skip
        if not found:
            return Explanation(query, None, (), NO_MATCH)
        best = found[0][0]
        label = f"rule {best.rule.id}" if best.rule.id is not None else best.decision.reason
        reason = win_reason(label, best.rank, found[1][0].rank if len(found) > 1 else None)
        return Explanation(query, best.decision, matches, reason)


def _blocklist_entry(target: str, is_net: bool) -> _Entry:
    """A blocklist hit as a virtual deny rule (any port/proto, priority 0) that loses full
    ties: a network ranks as a CIDR rule, a domain as a wildcard that also covers the apex."""
    e = _Entry.__new__(_Entry)  # built directly: this runs for every blocklisted lookup
    e.scope, e.decision = None, Decision(Action.DENY, None, f"blocklist {target}", Origin.RULE)
    if is_net:
        e.host, e.wild, e.rule = None, False, Rule(Action.DENY, cidr=target, created=0)
        e.rank = (0, DEST_CIDR, int(target.rsplit("/", 1)[1]), -65536, 0, 0, 0, 0, 1, -_LAST)
    else:
        e.host, e.wild, e.rule = target, True, Rule(Action.DENY, host=target, created=0)
        e.rank = (0, DEST_WILDCARD, target.count(".") + 1, -65536, 0, 0, 0, 0, 1, -_LAST)
    e.rule.source, e.rule.note = "blocklist", "blocklist: the entry and all it covers"
    return e
