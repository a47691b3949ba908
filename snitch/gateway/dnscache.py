"""Upstream answers kept for their TTL: a repeated lookup costs no round trip.

Clients resolve before every request (Python's urllib asks A and AAAA each time), so
the forwarder keeps what upstream said, by the judged question (name, type), for as
long as the answer's records say (the smallest TTL of the answer section, at most
``MAX_TTL``). Negative answers (NXDOMAIN, or NOERROR without an answer: NODATA) are
kept per RFC 2308 for the smaller of the SOA record's TTL and its MINIMUM field, and
not at all without an SOA in the authority section. Truncated answers and other
errors are never kept. A cached reply comes back with every TTL lowered by its age.

Only the upstream reply is cached: every query is still judged by the rules of the
moment, filtered (CNAME chain, rebinding guard), learnt and logged by the forwarder
(dns.py), exactly as a forwarded one.
"""

from __future__ import annotations

import time
from typing import Any

from dnslib import QTYPE, RCODE, RR, DNSHeader, DNSRecord

MAX_TTL = 3600  # seconds an answer is kept at most
MAX_ENTRIES = 4096  # the oldest go first


def answer_ttl(reply: Any, max_ttl: int = MAX_TTL) -> int:
    """How long ``reply`` may be kept (0: not at all)."""
    header = reply.header
    if header.tc or header.rcode not in (RCODE.NOERROR, RCODE.NXDOMAIN):
        return 0
    if header.rcode == RCODE.NOERROR and reply.rr:
        return max(0, min(min(int(rr.ttl) for rr in reply.rr), max_ttl))
    # Negative (RFC 2308 section 5): min(SOA TTL, SOA MINIMUM); no SOA, no caching.
    soas = [rr for rr in reply.auth if rr.rtype == QTYPE.SOA]
    if not soas:
        return 0
    soa = soas[0]
    return max(0, min(int(soa.ttl), int(soa.rdata.times[-1]), max_ttl))


class DnsCache:
    def __init__(self, clock: Any = time.monotonic, max_ttl: int = MAX_TTL) -> None:
        self.clock = clock
        self.max_ttl = max_ttl  # 0: nothing is kept
        self._entries: dict[tuple[str, int], tuple[Any, float, float]] = {}
        self.hits = 0
        self.misses = 0

    def get(self, name: str, qtype: int) -> DNSRecord | None:
        """A kept reply for (name, type), its TTLs lowered by its age; None on a miss."""
        found = self._entries.get((name, qtype))
        now = self.clock()
        if found is None or found[2] <= now:
            if found is not None:
                del self._entries[(name, qtype)]
            self.misses += 1
            return None
        reply, stored, _ = found
        self.hits += 1
        age = int(now - stored)
        h = reply.header
        header = DNSHeader(id=h.id, qr=1, aa=h.aa, tc=h.tc, rd=h.rd, ra=h.ra, rcode=h.rcode)
        return DNSRecord(
            header,
            q=reply.q,
            rr=[_aged(rr, age) for rr in reply.rr],
            auth=[_aged(rr, age) for rr in reply.auth],
        )

    def put(self, name: str, qtype: int, reply: Any) -> None:
        ttl = answer_ttl(reply, self.max_ttl)
        if ttl <= 0:
            return
        if len(self._entries) >= MAX_ENTRIES:
            del self._entries[next(iter(self._entries))]
        now = self.clock()
        self._entries.pop((name, qtype), None)  # re-inserted last: the newest
        self._entries[(name, qtype)] = (reply, now, now + ttl)

    def __len__(self) -> int:
        return len(self._entries)


def _aged(rr: Any, age: int) -> RR:
    return RR(rr.rname, rr.rtype, rr.rclass, max(0, int(rr.ttl) - age), rr.rdata)
