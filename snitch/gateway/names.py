"""Which names led to which addresses, learnt from the DNS answers the sandbox got."""

from __future__ import annotations

import itertools
import math
import time

# Programs cache answers beyond their TTL; keep a name attached to an address for at
# least this long so a rule by name keeps matching (and a CDN's rotation keeps working).
MIN_KEEP_SECONDS = 600.0
_VERSIONS = itertools.count(1)


class NameTable:
    """Address -> names, with expiry. Several names can share an address."""

    def __init__(self) -> None:
        self._by_ip: dict[str, dict[str, float]] = {}
        self.version = next(_VERSIONS)  # changes whenever a name comes or goes

    def add(self, ip: str, name: str, ttl: int, now: float | None = None) -> None:
        now = time.time() if now is None else now
        expiry = now + max(float(ttl), MIN_KEEP_SECONDS)
        names = self._by_ip.setdefault(ip, {})
        names[name.rstrip(".").lower()] = max(expiry, names.get(name, 0.0))
        self.version = next(_VERSIONS)

    def expiry(self, ip: str) -> float:
        """When the first of the address's names expires (inf when it has none)."""
        return min(self._by_ip.get(ip, {}).values(), default=math.inf)

    def names_for(self, ip: str, now: float | None = None) -> tuple[str, ...]:
        names = self._by_ip.get(ip)
        if not names:
            return ()
        now = time.time() if now is None else now
        live = tuple(n for n, exp in names.items() if exp > now)
        if len(live) != len(names):
            for n in [n for n, exp in names.items() if exp <= now]:
                del names[n]
            self.version = next(_VERSIONS)
        return live

    def snapshot(self) -> dict[str, list[str]]:
        """Every address with its live names (for the log, exports and the API)."""
        return {ip: list(self.names_for(ip)) for ip in list(self._by_ip)}
