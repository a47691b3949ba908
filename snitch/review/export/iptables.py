"""``iptables-restore`` input: the filter table with OUTPUT policy DROP.

One line per rule and address, in precedence order (first match decides, as in coderun).
IPv6 goes in a trailing block of ``#6 ``-prefixed lines for ``ip6tables-restore``
(``sed -n 's/^#6 //p' FILE | ip6tables-restore``), so the file itself loads as IPv4.
Rules with many addresses get an ipset hint in comments.
"""

from __future__ import annotations

import ipaddress

from snitch.core.model import Action, Proto, Rule
from snitch.review.export.common import (
    Dest,
    ExportOptions,
    ExportResult,
    Resolutions,
    check_resolvers,
    clean_comment,
    destinations,
    header,
    l4,
    name_warnings,
    prepare,
)

IPSET_HINT_AT = 4  # addresses of one rule from which an ipset is suggested


def _match(fam: int, proto: str, lo: int, hi: int) -> str:
    if proto == "all":
        return ""
    if proto == "icmp":
        return " -p icmp" if fam == 4 else " -p ipv6-icmp"
    if not lo:
        return f" -p {proto}"
    port = str(lo) if lo == hi else f"{lo}:{hi}"
    return f" -p {proto} -m {proto} --dport {port}"


def _line(fam: int, dest: Dest | None, proto: str, lo: int, hi: int, rule: Rule) -> str:
    d = f" -d {dest.net}" if dest is not None else ""
    label = dest.label if dest is not None and dest.names else rule.describe()
    target = "ACCEPT" if rule.action is Action.ALLOW else "DROP"
    comment = clean_comment(label, 250)
    return f'-A OUTPUT{d}{_match(fam, proto, lo, hi)} -m comment --comment "{comment}" -j {target}'


def _hint(fam: int, index: int, dests: list[Dest], rule: Rule) -> list[str]:
    name = f"coderun-r{index}-v{fam}"
    family = "inet" if fam == 4 else "inet6"
    target = "ACCEPT" if rule.action is Action.ALLOW else "DROP"
    out = [
        f"# hint: {len(dests)} addresses for {rule.describe()}; with ipset, one line each:",
        f"#   ipset create {name} hash:net family {family}",
    ]
    out += [f"#   ipset add {name} {d.net}" for d in dests]
    for proto, lo, hi in l4(rule):
        out.append(
            f"#   -A OUTPUT -m set --match-set {name} dst{_match(fam, proto, lo, hi)} -j {target}"
        )
    return out


def _table(
    fam: int, rules: list[Rule], resolutions: Resolutions, resolvers: list[str]
) -> list[str]:
    out = ["*filter", ":INPUT ACCEPT [0:0]", ":FORWARD ACCEPT [0:0]", ":OUTPUT DROP [0:0]"]
    out += [
        "-A OUTPUT -o lo -j ACCEPT",
        "-A OUTPUT -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT",
        "-A OUTPUT -m conntrack --ctstate INVALID -j DROP",
    ]
    if fam == 6:
        for t in ("neighbour-solicitation", "neighbour-advertisement", "router-solicitation"):
            out.append(f"-A OUTPUT -p ipv6-icmp -m icmp6 --icmpv6-type {t} -j ACCEPT")
    mine = [r for r in resolvers if ipaddress.ip_address(r).version == fam]
    if resolvers and not mine:
        out.append("# no resolver of this family: no DNS")
    for r in mine or ([] if resolvers else [""]):
        d = f" -d {r}" if r else ""
        for p in ("udp", "tcp"):
            out.append(
                f'-A OUTPUT{d} -p {p} -m {p} --dport 53 -m comment --comment "DNS" -j ACCEPT'
            )
    seen: set[str] = set()
    for i, rule in enumerate(rules, start=1):
        if rule.proto is Proto.DNS:
            out.append(f"# {rule.describe()}: lookups are not filtered by name here")
            continue
        dests = destinations(rule, resolutions)
        if dests == []:
            out.append(f"# {rule.describe()}: no address seen, left out")
            continue
        mine_d: list[Dest | None] = (
            [None] if dests is None else [d for d in dests if d.net.version == fam]
        )
        if not mine_d:
            continue
        real = [d for d in mine_d if d is not None]
        if len(real) >= IPSET_HINT_AT:
            out += _hint(fam, i, real, rule)
        for proto, lo, hi in l4(rule):
            for dest in mine_d:
                line = _line(fam, dest, proto, lo, hi, rule)
                key = line.split(" -m comment")[0] + line.rsplit(" ", 1)[1]
                if key not in seen:
                    seen.add(key)
                    out.append(line)
    out.append("COMMIT")
    return out


def export_iptables(
    rules: list[Rule], resolutions: Resolutions, opts: ExportOptions
) -> ExportResult:
    check_resolvers(opts)
    prep = prepare(rules, opts.now)
    warnings = list(prep.warnings)
    for rule in prep.rules:
        if rule.proto is Proto.DNS and rule.action is Action.DENY:
            warnings.append(f"{rule.describe()}: iptables cannot refuse lookups by name")
        elif rule.proto is not Proto.DNS:
            warnings.extend(name_warnings(rule, destinations(rule, resolutions), ip_only=True))
    lines = [f"# {h}" for h in header("iptables", opts, len(prep.rules))]
    lines += [f"# warning: {w}" for w in warnings]
    lines += ["# Load: iptables-restore < FILE", ""]
    lines += _table(4, prep.rules, resolutions, opts.resolvers)
    lines += [
        "",
        "# --- IPv6: the lines below without their '#6 ' prefix are ip6tables-restore input:",
        "#   sed -n 's/^#6 //p' FILE | ip6tables-restore",
    ]
    lines += [f"#6 {x}" for x in _table(6, prep.rules, resolutions, opts.resolvers)]
    return ExportResult(text="\n".join(lines) + "\n", warnings=warnings)
