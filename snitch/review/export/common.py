"""What every exporter shares: the result type, which rules export, names -> addresses.

Rules are handed to the formats in precedence order (the rule that would decide a
connection first), so a first-match firewall evaluates them as coderun's engine would.
"""

from __future__ import annotations

import ipaddress
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from snitch.core.grammar import is_address, normalize_name
from snitch.core.model import Action, Proto, Rule
from snitch.core.precedence import precedence_key

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolutions = Mapping[str, Sequence[str]]


class ExportError(ValueError):
    """The rules cannot be written in the asked format (unknown format, bad option)."""


@dataclass(slots=True)
class ExportResult:
    """``text`` for stdout or one file; ``files`` (name -> content) for per-rule formats."""

    text: str = ""
    files: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


@dataclass(slots=True)
class ExportOptions:
    """Knobs of the formats. ``resolvers`` empty means DNS may go to any address."""

    name: str = "coderun"
    source: str = "the rule store"
    resolvers: list[str] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=lambda: {"app": "coderun"})
    namespace: str | None = None
    now: float | None = None


@dataclass(frozen=True, slots=True)
class Dest:
    """One destination network of a rule, with the names whose lookups returned it."""

    net: IPNetwork
    names: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        return ",".join(self.names) if self.names else str(self.net)


@dataclass(slots=True)
class Prepared:
    rules: list[Rule]
    warnings: list[str]


def check_resolvers(opts: ExportOptions) -> None:
    """ExportError unless every resolver is an address."""
    for r in opts.resolvers:
        if not is_address(r):
            raise ExportError(f"bad resolver address {r!r}")


def prepare(rules: Sequence[Rule], now: float | None = None) -> Prepared:
    """The rules a firewall can carry, in precedence order, and why others were left out."""
    t = time.time() if now is None else now
    kept: list[tuple[tuple[int, ...], int, Rule]] = []
    warnings: list[str] = []
    temporary = files = 0
    for order, rule in enumerate(rules):
        if not rule.enabled:
            continue
        if rule.proto is Proto.FILE:  # decides opens of --share files, not connections
            files += 1
            continue
        if rule.once_key is not None or rule.session is not None:
            temporary += 1
            continue
        if rule.expires_at is not None:
            if rule.expires_at <= t:
                continue
            warnings.append(f"{rule.describe()}: expires later in coderun, exported as permanent")
        if rule.path_prefix or rule.method:
            what = "a URL path" if rule.path_prefix else "an HTTP method"
            warnings.append(
                f"{rule.describe()}: {what} cannot be matched by a firewall; rule left out"
            )
            continue
        if rule.scope != "global":
            warnings.append(f"{rule.describe()}: scope {rule.scope} exported as global")
        kept.append((precedence_key(rule), -order, rule))
    if temporary:
        warnings.append(f"{temporary} once/session rules left out (they only live in coderun)")
    if files:
        warnings.append(
            f"{files} file rules left out (they decide opens of shared files, not connections)"
        )
    kept.sort(key=lambda k: (k[0], k[1]), reverse=True)
    return Prepared([r for _, _, r in kept], warnings)


def addresses_for(host: str, resolutions: Resolutions) -> dict[str, list[str]]:
    """Address -> names for ``host`` (an exact name or ``*.domain``: every seen subdomain)."""
    h = normalize_name(host)
    wild = h.startswith("*.")
    suffix = "." + h[2:]
    out: dict[str, list[str]] = {}
    for name, addrs in sorted(resolutions.items()):
        n = normalize_name(name)
        if n.endswith(suffix) if wild else n == h:
            for a in addrs:
                names = out.setdefault(a, [])
                if n not in names:
                    names.append(n)
    return out


def destinations(rule: Rule, resolutions: Resolutions) -> list[Dest] | None:
    """The networks a rule reaches; None for any destination, [] for a name never seen."""
    if rule.cidr is not None:
        return [Dest(ipaddress.ip_network(rule.cidr, strict=False))]
    if rule.host is None:
        return None
    dests = []
    for addr, names in addresses_for(rule.host, resolutions).items():
        try:
            dests.append(Dest(ipaddress.ip_network(addr), tuple(names)))
        except ValueError:
            continue
    return sorted(dests, key=lambda d: (d.net.version, d.net))


def l4(rule: Rule) -> list[tuple[str, int, int]]:
    """(protocol, port_lo, port_hi) pairs: tcp/udp/icmp, or ``all`` for any protocol and port.

    ``any`` with a port means tcp and udp. A DNS-lookup rule gives none.
    """
    lo, hi = rule.port_lo, rule.port_hi
    if rule.proto is Proto.DNS:
        return []
    if rule.proto is Proto.ICMP:
        return [("icmp", 0, 0)]
    if rule.proto in (Proto.TCP, Proto.UDP):
        return [(str(rule.proto), lo, hi)]
    if lo:
        return [("tcp", lo, hi), ("udp", lo, hi)]
    return [("all", 0, 0)]


def name_warnings(rule: Rule, dests: list[Dest] | None, *, ip_only: bool) -> list[str]:
    """Warnings for a rule by name in a format that takes only addresses."""
    if rule.host is None or rule.cidr is not None or not ip_only:
        return []
    if dests == []:
        return [f"{rule.describe()}: no address of {rule.host} seen in the logs; rule left out"]
    if rule.action is Action.DENY and dests:
        addrs = ", ".join(str(d.net.network_address) for d in dests)
        return [
            f"{rule.describe()}: denied only at the addresses seen for it ({addrs}); "
            "other addresses of the name stay reachable if another rule allows them"
        ]
    return []


def clean_comment(text: str, limit: int = 120) -> str:
    """Text safe inside a double-quoted firewall comment."""
    out = "".join(c if c.isprintable() and c not in '"\\' else " " for c in text)
    return out if len(out) <= limit else out[: limit - 3] + "..."


_K8S_NAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")


def policy_name(opts: ExportOptions) -> str:
    """``NAME-egress`` for Kubernetes objects; ExportError unless NAME is a DNS label."""
    if not _K8S_NAME.fullmatch(opts.name) or len(opts.name) > 56:
        raise ExportError(f"bad policy name {opts.name!r} (lower-case letters, digits and -)")
    return f"{opts.name}-egress"


def header(fmt: str, opts: ExportOptions, count: int, *, addresses: bool = True) -> list[str]:
    """The lines every text format starts with (without comment markers); ``addresses``
    for formats that write the addresses seen for names."""
    stamp = time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(opts.now or time.time()))
    lines = [f"coderun export --format {fmt}: {count} rules from {opts.source}, {stamp}"]
    if addresses:
        lines += [
            "Addresses given for names are the ones coderun's session logs saw (DNS answers",
            "and connections): the same names may resolve to other addresses elsewhere or later.",
        ]
    return lines
