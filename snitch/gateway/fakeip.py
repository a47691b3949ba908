"""Synthetic DNS answers for names nobody has decided on yet (ask mode).

A resolver gives up after a few seconds, a held SYN lasts about two minutes. So an
unknown name is answered at once with an address from a pool no real host uses
(198.18.0.0/15, reserved for benchmarks), and *no query leaves the gateway*. The SYN
to that address is held with the name already known; when a person allows it the name
is resolved for real and the flow is DNATed to the real address before its packet is
accepted (the nat hook runs after the mangle hook that queued it). The real address is
checked first: an address inside (snitch/gateway/addresses.py) is never routed to by a name.
"""

from __future__ import annotations

import asyncio
import ipaddress
import subprocess
from collections.abc import Awaitable, Callable

from snitch.gateway.names import NameTable

POOL = ipaddress.ip_network("198.18.0.0/15")
CHAIN = "CODERUN_FAKE"
SYNTHETIC_TTL = 5  # short: once a rule exists, the next lookup gets the real answer

# A name's real addresses, each with why it is inside (None: outside).
Resolver = Callable[[str], Awaitable[list[tuple[str, str | None]]]]
# Why the flow may not go to this real address (None: it may).
Refuser = Callable[[str, str | None], str | None]


def _refuse_inside(ip: str, why: str | None) -> str | None:
    return why


class Rebound(LookupError):
    """Every real address of the name is one it may not lead to; ``address`` is the
    first, ``why`` what it is."""

    def __init__(self, name: str, address: str, why: str) -> None:
        super().__init__(f"{name} leads to {address} ({why})")
        self.name = name
        self.address = address
        self.why = why


class FakeIPs:
    def __init__(self, names: NameTable, resolve: Resolver) -> None:
        self.names = names
        self.resolve = resolve
        self._by_name: dict[str, str] = {}
        self._name_of: dict[str, str] = {}
        self._real: dict[str, str] = {}
        self._next = int(POOL.network_address) + 1
        self._lock = asyncio.Lock()

    @staticmethod
    def is_fake(ip: str) -> bool:
        return ip.startswith(("198.18.", "198.19."))

    def assign(self, name: str) -> str:
        """The synthetic address of ``name`` (the same one each time)."""
        ip = self._by_name.get(name)
        if ip is None:
            if self._next >= int(POOL.broadcast_address):
                raise RuntimeError("synthetic address pool exhausted")
            ip = str(ipaddress.ip_address(self._next))
            self._next += 1
            self._by_name[name] = ip
            self._name_of[ip] = name
        self.names.add(ip, name, 24 * 3600)
        return ip

    def name_of(self, ip: str) -> str | None:
        return self._name_of.get(ip)

    def real_address(self, ip: str) -> str | None:
        return self._real.get(ip)

    async def route(self, fake: str, refuse: Refuser = _refuse_inside) -> str:
        """Resolve the name behind ``fake`` and DNAT it to its first real address that
        ``refuse`` accepts (by default: one outside); returns that address. Raises
        ``Rebound`` when there is none, LookupError when the name has no address."""
        async with self._lock:
            if fake in self._real:
                return self._real[fake]
            name = self._name_of.get(fake)
            if name is None:
                raise LookupError(f"{fake} was never given out for a name")
            answers = await self.resolve(name)
            if not answers:
                raise LookupError(f"{name} has no address")
            real = ""
            for ip, inside in answers:
                if refuse(ip, inside) is None:
                    real = ip
                    break
            if not real:
                first, inside = answers[0]
                raise Rebound(name, first, refuse(first, inside) or "refused")
            await asyncio.to_thread(_dnat, fake, real)
            self._real[fake] = real
            return real


def _dnat(fake: str, real: str) -> None:
    proc = subprocess.run(
        ["iptables", "-t", "nat", "-A", CHAIN, "-d", fake, "-j", "DNAT", "--to-destination", real],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"DNAT {fake} -> {real} failed: {proc.stderr.strip()}")
