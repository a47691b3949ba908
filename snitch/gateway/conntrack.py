"""Cut established flows: delete their conntrack entries over netlink (pyroute2).

Once its entry is gone, the next packet of a cut flow is conntrack-NEW again: it goes to
the queue and is judged like a new flow (snitch/gateway/revocation.py has it refused at once: a
TCP RST, UDP dropped). The gateway image has Debian's python3-pyroute2; it is imported
lazily, so the rest of snitch imports without it. Calls block (a delete is a netlink
round trip of about half a millisecond): the gateway makes them in a thread.

Listing the table is left to the ``conntrack`` CLI: pyroute2 parses every entry in
Python (measured in the gateway image: 40,000 entries took 15 s of CPU and 600 MB),
``conntrack -L`` lists them in 0.4 s.
"""

from __future__ import annotations

import socket
import subprocess
import threading
from typing import Any

from snitch.core.model import FlowKey, Proto

_NUMBERS = {Proto.TCP: socket.IPPROTO_TCP, Proto.UDP: socket.IPPROTO_UDP,
            Proto.ICMP: socket.IPPROTO_ICMP}  # fmt: skip
_BY_NAME = {str(proto): proto for proto in _NUMBERS}
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
        """The original 5-tuple of every IPv4 entry now in the table."""
        proc = subprocess.run(["conntrack", "-L", "-f", "ipv4"], capture_output=True,
                              text=True, timeout=60)  # fmt: skip
        if proc.returncode != 0:
            raise ConntrackError(f"conntrack -L failed: {proc.stderr.strip()[-300:]}")
        return parse_listing(proc.stdout)

    def close(self) -> None:
        with self._lock:
            if self._ct is not None:
                self._ct.close()
                self._ct = None


def parse_listing(text: str) -> set[FlowKey]:
    """FlowKeys from ``conntrack -L`` lines, e.g. ``tcp 6 431999 ESTABLISHED src=A
    dst=B sport=1 dport=2 src=B dst=A ...``: the first of each field is the original
    direction's (ICMP: ``type=`` and ``id=`` stand for the ports, as in FlowKey)."""
    found: set[FlowKey] = set()
    for line in text.splitlines():
        fields = line.split()
        proto = _BY_NAME.get(fields[0]) if fields else None
        if proto is None:
            continue
        seen: dict[str, str] = {}
        for field in fields[3:]:
            key, sep, value = field.partition("=")
            if sep and key not in seen:
                seen[key] = value
        try:
            if proto is Proto.ICMP:
                sport, dport = int(seen["id"]), int(seen["type"])
            else:
                sport, dport = int(seen["sport"]), int(seen["dport"])
            found.add(FlowKey(proto, seen["src"], sport, seen["dst"], dport))
        except (KeyError, ValueError):
            continue
    return found
