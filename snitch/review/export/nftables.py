"""An ``nft -f`` script: table ``inet coderun`` with an output chain, policy drop.

Rules become elements of named sets (address . port for tcp/udp, address for icmp and
"any protocol"). Rules are grouped into tiers of consecutive rules with the same action
in precedence order; each tier has its own sets and the chain tests the tiers in order,
so the first match decides as coderun's engine would. Elements inside one set never
overlap (the kernel refuses some overlaps): an element covered by another is dropped
(its names join the other's comment), other overlapping ones go to a second set.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field

from snitch.core.model import Action, Proto, Rule
from snitch.review.export.common import (
    Dest,
    ExportError,
    ExportOptions,
    ExportResult,
    IPNetwork,
    Resolutions,
    check_resolvers,
    clean_comment,
    destinations,
    header,
    l4,
    name_warnings,
    prepare,
)

_IDENT = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,30}")
_ANY = (ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_network("::/0"))
_KINDS = ("tcp", "udp", "icmp", "all")


@dataclass(slots=True)
class _Elem:
    net: IPNetwork
    lo: int  # 0..65535 for "any port"
    hi: int
    labels: list[str] = field(default_factory=list)

    def covers(self, other: _Elem) -> bool:
        return (
            other.net.version == self.net.version
            and other.net.subnet_of(self.net)  # type: ignore[arg-type]
            and self.lo <= other.lo
            and other.hi <= self.hi
        )

    def meets(self, other: _Elem) -> bool:
        return self.net.overlaps(other.net) and self.lo <= other.hi and other.lo <= self.hi

    def text(self, concat: bool) -> str:
        port = str(self.lo) if self.lo == self.hi else f"{self.lo}-{self.hi}"
        value = f"{self.net} . {port}" if concat else str(self.net)
        if self.net.prefixlen == self.net.max_prefixlen:
            addr = str(self.net.network_address)
            value = f"{addr} . {port}" if concat else addr
        label = clean_comment(", ".join(self.labels))
        return f'{value} comment "{label}"' if label else value


def _add(elems: list[_Elem], new: _Elem) -> None:
    for e in elems:
        if e.covers(new):
            e.labels.extend(x for x in new.labels if x not in e.labels)
            return
    for e in [e for e in elems if new.covers(e)]:
        new.labels.extend(x for x in e.labels if x not in new.labels)
        elems.remove(e)
    elems.append(new)


def _buckets(elems: list[_Elem]) -> list[list[_Elem]]:
    """Split elements into groups in which no two overlap."""
    buckets: list[list[_Elem]] = []
    for e in elems:
        for b in buckets:
            if not any(e.meets(o) for o in b):
                b.append(e)
                break
        else:
            buckets.append([e])
    return buckets


def _statement(fam: int, kind: str, name: str, verdict: str) -> str:
    ip = "ip" if fam == 4 else "ip6"
    if kind in ("tcp", "udp"):
        return f"{ip} daddr . {kind} dport @{name} {verdict}"
    if kind == "icmp":
        proto = "icmp" if fam == 4 else "ipv6-icmp"
        return f"meta l4proto {proto} {ip} daddr @{name} {verdict}"
    return f"{ip} daddr @{name} {verdict}"


def _tiers(rules: list[Rule]) -> list[tuple[Action, list[Rule]]]:
    tiers: list[tuple[Action, list[Rule]]] = []
    for r in rules:
        if tiers and tiers[-1][0] is r.action:
            tiers[-1][1].append(r)
        else:
            tiers.append((r.action, [r]))
    return tiers


def _resolver_lines(resolvers: list[str]) -> list[str]:
    if not resolvers:
        return [
            "# DNS to any resolver (restrict it: coderun export --resolver ADDRESS)",
            "udp dport 53 accept",
            "tcp dport 53 accept",
        ]
    out = ["# DNS to the resolvers"]
    for fam, ip in ((4, "ip"), (6, "ip6")):
        addrs = [a for a in resolvers if ipaddress.ip_address(a).version == fam]
        if addrs:
            joined = ", ".join(addrs)
            out += [f"{ip} daddr {{ {joined} }} {p} dport 53 accept" for p in ("udp", "tcp")]
    return out


def export_nftables(
    rules: list[Rule], resolutions: Resolutions, opts: ExportOptions
) -> ExportResult:
    if not _IDENT.fullmatch(opts.name):
        raise ExportError(f"bad table name {opts.name!r} (letters, digits, _ and -)")
    check_resolvers(opts)
    prep = prepare(rules, opts.now)
    warnings = list(prep.warnings)
    sets: list[str] = []
    chain: list[str] = []
    seen_tiers: dict[Action, int] = {}
    for action, tier in _tiers(prep.rules):
        seen_tiers[action] = seen_tiers.get(action, 0) + 1
        n = seen_tiers[action]
        word = "allow" if action is Action.ALLOW else "deny"
        tier_tag = "" if n == 1 else f"_t{n}"
        verdict = "accept" if action is Action.ALLOW else "drop"
        chain.append(f"# {word}{tier_tag}: " + "; ".join(r.describe() for r in tier))
        groups: dict[tuple[int, str], list[_Elem]] = {}
        for rule in tier:
            if rule.proto is Proto.DNS:
                chain.append(f"# {rule.describe()}: lookups are not filtered by name here")
                if action is Action.DENY:
                    warnings.append(f"{rule.describe()}: nftables cannot refuse lookups by name")
                continue
            dests = destinations(rule, resolutions)
            warnings.extend(name_warnings(rule, dests, ip_only=True))
            if dests == []:
                chain.append(f"# {rule.describe()}: no address seen, left out")
                continue
            targets = [Dest(net) for net in _ANY] if dests is None else dests
            for proto, lo, hi in l4(rule):
                for d in targets:
                    labels = list(d.names) if rule.host else [rule.describe()]
                    elem = _Elem(d.net, lo, hi if lo else 65535, labels)
                    _add(groups.setdefault((d.net.version, proto), []), elem)
        for (fam, kind), elems in sorted(
            groups.items(), key=lambda kv: (kv[0][0], _KINDS.index(kv[0][1]))
        ):
            concat = kind in ("tcp", "udp")
            for i, bucket in enumerate(_buckets(elems), start=1):
                name = f"{word}{fam}_{kind}{tier_tag}" + ("" if i == 1 else f"_b{i}")
                typ = f"ipv{fam}_addr" + (" . inet_service" if concat else "")
                body = ",\n".join(f"\t\t\t{e.text(concat)}" for e in bucket)
                sets.append(
                    f"\tset {name} {{\n\t\ttype {typ}\n\t\tflags interval\n"
                    f"\t\telements = {{\n{body}\n\t\t}}\n\t}}\n"
                )
                chain.append(_statement(fam, kind, name, verdict))
    lines = ["#!/usr/sbin/nft -f"]
    lines += [f"# {h}" for h in header("nftables", opts, len(prep.rules))]
    lines += [f"# warning: {w}" for w in warnings]
    t = opts.name
    lines += ["", f"table inet {t}", f"delete table inet {t}", f"table inet {t} {{"]
    lines += sets
    base = [
        "type filter hook output priority filter; policy drop;",
        "ct state established,related accept",
        "ct state invalid drop",
        'oifname "lo" accept',
        "icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert, nd-router-solicit } accept",
        *_resolver_lines(opts.resolvers),
        *chain,
    ]
    lines.append("\tchain output {")
    lines += [f"\t\t{s}" for s in base]
    lines += ["\t}", "}"]
    return ExportResult(text="\n".join(lines) + "\n", warnings=warnings)
