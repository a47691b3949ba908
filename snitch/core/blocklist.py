"""Blocklists: huge sets of denied domains (and networks) kept compact.

A blocklisted domain denies the domain and all its subdomains. Entries are plain strings:
a normalised domain (``ads.example.com``) or a network that always carries its prefix
length (``203.0.113.0/24``, ``198.51.100.7/32``), so the two never look alike.

Parsing accepts the usual list formats (Pi-hole, OpenSnitch, uBlock-style hosts lists):

* hosts files: ``0.0.0.0 ads.example.com [more names]`` (any address in front),
* plain domain lists, one per line, ``*.`` prefix allowed,
* adblock-style ``||ads.example.com^`` lines,
* network lists: ``203.0.113.0/24`` or a bare address,
* ``#`` comments (whole line or trailing) and ``!`` comment lines.

Lines that fit none of these, single-label names (``localhost``, ``local``, a bare TLD)
and ``localhost.localdomain`` are skipped and counted, never fatal: third-party lists are
messy.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

_NUMERIC = re.compile(r"[0-9./]+")
_BOILERPLATE = frozenset({"localhost.localdomain", "local.localdomain"})
_DOMAIN = re.compile(r"[a-z0-9_](?:[a-z0-9_-]*[a-z0-9_])?(?:\.[a-z0-9_](?:[a-z0-9_-]*[a-z0-9_])?)+")


class BlocklistLookup(Protocol):
    """What the policy engine needs from a blocklist."""

    def match_name(self, name: str) -> str | None:
        """The blocklisted domain covering ``name`` (itself or a parent), or None."""
        ...

    def match_ip(self, ip: str) -> str | None:
        """The most specific blocklisted network containing ``ip``, or None."""
        ...


def normalize_domain(text: str) -> str | None:
    """``text`` as a blocklist domain, or None if it is not a multi-label domain name."""
    d = text.strip().lower().rstrip(".")
    if d.startswith("*."):
        d = d[2:]
    if len(d) > 253 or not _DOMAIN.fullmatch(d) or d[d.rfind(".") + 1 :].isdigit():
        return None  # (a numeric last label is a broken address, not a name)
    return d


def normalize_network(text: str) -> str | None:
    """``text`` (an address or CIDR, host bits allowed) as ``net/len``, or None."""
    try:
        return str(ipaddress.ip_network(text.strip(), strict=False))
    except ValueError:
        return None


def normalize_entry(text: str) -> str | None:
    """A blocklist entry (domain or network) in its stored form, or None if invalid."""
    t = text.strip()
    if ":" in t or _NUMERIC.fullmatch(t):
        net = normalize_network(t)
        if net is not None:
            return net
    return normalize_domain(t)


def is_network(entry: str) -> bool:
    return "/" in entry


@functools.lru_cache(maxsize=256)  # hosts files repeat one or two addresses
def _is_address(token: str) -> bool:
    if not (":" in token or _NUMERIC.fullmatch(token)):
        return False
    try:
        ipaddress.ip_address(token)
    except ValueError:
        return False
    return True


@dataclass(slots=True)
class ParsedList:
    """The result of parsing a list: entries in stored form plus the skipped line count."""

    domains: list[str] = field(default_factory=list)
    networks: list[str] = field(default_factory=list)
    skipped: int = 0

    @property
    def entries(self) -> list[str]:
        return self.domains + self.networks


def parse_blocklist(lines: Iterable[str]) -> ParsedList:
    """Parse any of the supported list formats (see the module docstring)."""
    out = ParsedList()
    add_domain, add_net = out.domains.append, out.networks.append
    for raw in lines:
        line = raw.split("#", 1)[0].strip()
        if not line or line[0] == "!":
            continue
        if line.startswith("||"):
            line = line[2:].split("^", 1)[0].split("$", 1)[0]
        tokens = line.split()
        if len(tokens) > 1:
            if not _is_address(tokens[0]):
                out.skipped += 1
                continue
            for name in tokens[1:]:
                d = normalize_domain(name)
                if d is None or d in _BOILERPLATE:
                    out.skipped += 1
                else:
                    add_domain(d)
            continue
        entry = normalize_entry(tokens[0])
        if entry is None:
            out.skipped += 1
        elif is_network(entry):
            add_net(entry)
        else:
            add_domain(entry)
    return out


def load_blocklist_file(path: Path) -> ParsedList:
    with path.open(encoding="utf-8", errors="replace") as f:
        return parse_blocklist(f)


class Blocklist:
    """An in-memory blocklist: a frozenset of domains plus prefix-length buckets of networks.

    Lookups walk the name's suffixes (``a.b.example.com``, ``b.example.com``, ...), one set
    probe per label, so they cost well under a microsecond per label.
    """

    __slots__ = ("_domains", "_nets")

    def __init__(self, entries: Iterable[str] = (), *, networks: Iterable[str] | None = None):
        """``entries`` in stored form; with ``networks`` given, ``entries`` are all domains."""
        nets: list[str] = [] if networks is None else list(networks)

        def domains() -> Iterable[str]:
            for e in entries:
                if "/" in e:
                    nets.append(e)
                else:
                    yield e

        self._domains: frozenset[str] = frozenset(entries if networks is not None else domains())
        # version -> [(prefixlen, shift, {network_int >> shift: "net/len"})], longest first
        self._nets: dict[int, list[tuple[int, int, dict[int, str]]]] = {}
        buckets: dict[tuple[int, int], dict[int, str]] = {}
        for text in nets:
            net = ipaddress.ip_network(text, strict=False)
            shift = net.max_prefixlen - net.prefixlen
            bucket = buckets.setdefault((net.version, net.prefixlen), {})
            bucket[int(net.network_address) >> shift] = str(net)
        for (version, plen), bucket in sorted(buckets.items(), key=lambda kv: -kv[0][1]):
            bits = 32 if version == 4 else 128
            self._nets.setdefault(version, []).append((plen, bits - plen, bucket))

    def __len__(self) -> int:
        return len(self._domains) + sum(len(b) for v in self._nets.values() for _, _, b in v)

    def match_name(self, name: str) -> str | None:
        d = self._domains
        if not d:
            return None
        name = name.lower().rstrip(".")
        while True:
            if name in d:
                return name
            i = name.find(".")
            if i < 0:
                return None
            name = name[i + 1 :]

    def match_ip(self, ip: str) -> str | None:
        if not self._nets:
            return None
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            return None
        value = int(addr)
        for _, shift, bucket in self._nets.get(addr.version, ()):
            hit = bucket.get(value >> shift)
            if hit is not None:
                return hit
        return None
