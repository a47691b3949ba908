"""Cut established flows: delete their conntrack entries over netlink (pyroute2).

Once its entry is gone, the next packet of a cut flow is conntrack-NEW again: it goes to
the queue and is judged like a new flow (snitch/revocation.py has it refused at once: a
TCP RST, UDP dropped). The gateway image has Debian's python3-pyroute2; it is imported
lazily, so the rest of snitch imports without it. Calls block (netlink round trips of
well under a millisecond): the gateway makes them in a thread.
"""

from __future__ import annotations

import socket
import threading
from typing import Any

from snitch.model import FlowKey, Proto

_NUMBERS = {Proto.TCP: socket.IPPROTO_TCP, Proto.UDP: socket.IPPROTO_UDP,
            Proto.ICMP: socket.IPPROTO_ICMP}  # fmt: skip
_PROTOS = {number: proto for proto, number in _NUMBERS.items()}
_ENOENT = 2


class ConntrackError(RuntimeError):
    """The conntrack table cannot be reached (no pyroute2, no CAP_NET_ADMIN)."""


class Conntrack:
    """The gateway namespace's conntrack table, by the flows' original 5-tuples."""

    def __init__(self) -> None:
        self._ct: Any = None
        self._lock = threading.Lock()  # one netlink socket, used from worker threads

    def _socket(self) -> Any:
        if self._ct is None:
            try:
                from pyroute2 import Conntrack as NetlinkConntrack
            except ImportError as exc:
                raise ConntrackError(f"pyroute2 is missing: {exc}") from exc
            self._ct = NetlinkConntrack()
        return self._ct

    @staticmethod
    def _tuple(key: FlowKey) -> Any:
        from pyroute2.netlink.nfnetlink.nfctsocket import NFCTAttrTuple

        number = _NUMBERS.get(key.proto)
        if number is None:
            raise ConntrackError(f"no conntrack tuple for {key.proto}")
        if key.proto is Proto.ICMP:  # the key holds the echo id and the ICMP type
            return NFCTAttrTuple(saddr=key.src, daddr=key.dst, proto=number,
                                 icmp_id=key.sport, icmp_type=key.dport, icmp_code=0)  # fmt: skip
        return NFCTAttrTuple(saddr=key.src, daddr=key.dst, proto=number,
                             sport=key.sport, dport=key.dport)  # fmt: skip

    def delete(self, key: FlowKey) -> bool:
        """Delete the entry whose original tuple is ``key``; False when there is none."""
        with self._lock:
            ct = self._socket()
            try:
                ct.entry("del", tuple_orig=self._tuple(key))
            except Exception as exc:
                if getattr(exc, "code", None) == _ENOENT:
                    return False
                raise ConntrackError(f"deleting the conntrack entry of {key}: {exc}") from exc
            return True

    def flows(self) -> set[FlowKey]:
        """The original 5-tuple of every entry now in the table."""
        found: set[FlowKey] = set()
        with self._lock:
            for entry in self._socket().dump_entries():
                t = entry.tuple_orig
                proto = _PROTOS.get(getattr(t, "proto", None) or 0)
                if proto is None:
                    continue
                if proto is Proto.ICMP:
                    sport, dport = t.icmp_id or 0, t.icmp_type or 0
                else:
                    sport, dport = t.sport or 0, t.dport or 0
                found.add(FlowKey(proto, str(t.saddr), int(sport), str(t.daddr), int(dport)))
        return found

    def close(self) -> None:
        with self._lock:
            if self._ct is not None:
                self._ct.close()
                self._ct = None
