"""Addresses a name never vouches for: where an allowed name must not lead (rebinding).

An allow rule by name lets the sandbox reach what the name resolves to, and whoever
runs the name's DNS decides what that is. So a DNS answer (or the real address behind a
synthetic one in ask mode) is never trusted to point *inside*:

- always: loopback, link-local (cloud metadata at 169.254.169.254), multicast,
  broadcast, unspecified and reserved addresses, 198.18.0.0/15 (the benchmark range,
  where coderun's synthetic addresses live), and IPv6 addresses that embed one of those
  (IPv4-mapped, NAT64, 6to4);
- the gateway's own addresses and the sandbox's network (its host side is the host);
- the host: its bridge addresses and the Docker networks it hosts (the session passes
  them; a network coderun made for the run's egress is nothing but the host's);
- by default (``--private-answers deny``), private ranges too: RFC 1918, CGNAT
  (100.64.0.0/10), IPv6 ULA and site-local. The egress network a person named with
  ``--egress-network`` is "the outside" of that run: its other members are reachable by
  name, its gateway address (the host) is not.

Only an address/CIDR rule reaches such an address (see snitch/gateway/rebind.py).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from snitch.core.settings import PrivateAnswers

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
CACHE_SIZE = 4096


def _nets(pairs: Iterable[tuple[str, str]]) -> tuple[tuple[IPNetwork, str], ...]:
    return tuple((ipaddress.ip_network(net), why) for net, why in pairs)


SPECIAL = _nets(
    [
        ("0.0.0.0/8", "unspecified"),
        ("127.0.0.0/8", "loopback"),
        ("169.254.0.0/16", "link-local"),
        ("224.0.0.0/4", "multicast"),
        ("255.255.255.255/32", "broadcast"),
        ("240.0.0.0/4", "reserved"),
        ("192.0.0.0/24", "reserved"),
        ("198.18.0.0/15", "the synthetic range"),
        ("::/128", "unspecified"),
        ("::1/128", "loopback"),
        ("fe80::/10", "link-local"),
        ("ff00::/8", "multicast"),
        ("::/96", "reserved"),  # IPv4-compatible (deprecated)
        ("100::/64", "reserved"),  # discard-only
    ]
)
PRIVATE = _nets(
    [
        ("10.0.0.0/8", "private"),
        ("172.16.0.0/12", "private"),
        ("192.168.0.0/16", "private"),
        ("100.64.0.0/10", "CGNAT"),
        ("fc00::/7", "private (ULA)"),
        ("fec0::/10", "private (site-local)"),
    ]
)
NAT64 = ipaddress.ip_network("64:ff9b::/96")


def networks(texts: Iterable[str]) -> list[IPNetwork]:
    """Addresses and CIDRs (as the environment carries them), bad ones skipped."""
    out = []
    for text in texts:
        try:
            out.append(ipaddress.ip_network(text.strip(), strict=False))
        except ValueError:
            continue
    return out


def embedded_v4(addr: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one carries (mapped, NAT64, 6to4), if any."""
    if addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    if addr.sixtofour is not None:
        return addr.sixtofour
    if addr in NAT64:
        return ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF)
    return None


class ProtectedAddresses:
    """Says why an address is inside (``why``), or None for the outside."""

    def __init__(
        self,
        *,
        gateway: Iterable[IPNetwork] = (),
        host: Iterable[IPNetwork] = (),
        outside: Iterable[IPNetwork] = (),
        private: PrivateAnswers = PrivateAnswers.DENY,
    ) -> None:
        self.gateway = tuple(gateway)  # its own addresses and the sandbox network
        self.host = tuple(host)
        self.outside = tuple(outside)  # a named egress network: its members are outside
        self.private = private
        self._cache: dict[str, str | None] = {}

    def why(self, ip: str) -> str | None:
        """Why ``ip`` is protected ("loopback", "the host", "private", ...), or None."""
        try:
            return self._cache[ip]
        except KeyError:
            pass
        if len(self._cache) >= CACHE_SIZE:
            self._cache.clear()
        try:
            addr: IPAddress = ipaddress.ip_address(ip)
        except ValueError:
            reason: str | None = "not an address"
        else:
            reason = self._classify(addr)
            if reason is None and isinstance(addr, ipaddress.IPv6Address):
                inner = embedded_v4(addr)
                if inner is not None:
                    reason = self._classify(inner)
                    reason = f"{reason}, embedded in {addr}" if reason else None
        self._cache[ip] = reason
        return reason

    def _classify(self, addr: IPAddress) -> str | None:
        for net, why in SPECIAL:
            if addr in net:
                return why
        for net in self.gateway:
            if addr in net:
                return "the gateway or the sandbox's network"
        for net in self.host:
            if addr in net:
                return "the host or a network it hosts"
        if any(addr in net for net in self.outside):
            return None
        if self.private is PrivateAnswers.DENY:
            for net, why in PRIVATE:
                if addr in net:
                    return why
        return None
