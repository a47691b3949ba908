"""Which names led to which addresses, learnt from the DNS answers the sandbox got."""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable

# Programs cache answers beyond their TTL; keep a name attached to an address for at
# least this long so a rule by name keeps matching (and a CDN's rotation keeps working).
MIN_KEEP_SECONDS = 600.0
_VERSIONS = itertools.count(1)


class NameTable:
    """Address -> names, with expiry. Several names can share an address.

    ``version`` changes, and ``listeners`` are told the address, whenever an address's
    set of names changes (a name comes or goes); a later expiry of a name it already
    has changes neither (verdicts kept by it end at the earlier expiry, which is safe).
    """

    def __init__(self) -> None:
        self._by_ip: dict[str, dict[str, float]] = {}
        self.version = next(_VERSIONS)
        self.listeners: list[Callable[[str], None]] = []

    def add(self, ip: str, name: str, ttl: int, now: float | None = None) -> None:
        now = time.time() if now is None else now
        expiry = now + max(float(ttl), MIN_KEEP_SECONDS)
        names = self._by_ip.setdefault(ip, {})
        name = name.rstrip(".").lower()
        known = names.get(name)
        names[name] = max(expiry, known or 0.0)
        if known is None or known <= now:  # new to this address (or it had expired)
            self._changed(ip)

    def _changed(self, ip: str) -> None:
        self.version = next(_VERSIONS)
        for listener in self.listeners:
            listener(ip)

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
            self._changed(ip)
        return live

    def snapshot(self) -> dict[str, list[str]]:
        """Every address with its live names (for the log, exports and the API)."""
        return {ip: list(self.names_for(ip)) for ip in list(self._by_ip)}
