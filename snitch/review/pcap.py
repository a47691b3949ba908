"""A pcap of the first packet of each logged flow, for Wireshark.

The packets are synthesised from the 5-tuple (no payload was recorded): a TCP SYN, an
empty UDP datagram, or an ICMP echo request, timestamped with the flow's log time.
The link type is raw IP, so IPv4 and IPv6 packets mix in one file. scapy is imported
only here, and only when a pcap is written.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from snitch.core.logentry import EntryKind, LogEntry

LINKTYPE_RAW = 101


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def flow_packet(e: LogEntry) -> Any | None:
    """The scapy packet a flow entry stands for; None for entries that are not flows.

    Addresses are checked first: scapy would resolve anything else as a host name.
    """
    from scapy.layers.inet import ICMP, IP, TCP, UDP
    from scapy.layers.inet6 import ICMPv6EchoRequest, IPv6

    if e.kind is not EntryKind.FLOW:
        return None
    src, dst = _address(e.src), _address(e.dst)
    if src is None or dst is None or src.version != dst.version:
        return None
    v6 = dst.version == 6
    ip = IPv6(src=str(src), dst=str(dst)) if v6 else IP(src=str(src), dst=str(dst))
    if e.proto == "tcp":
        pkt = ip / TCP(sport=e.sport, dport=e.dport, flags="S", seq=0)
    elif e.proto == "udp":
        pkt = ip / UDP(sport=e.sport, dport=e.dport)
    elif e.proto == "icmp":
        pkt = ip / (ICMPv6EchoRequest() if v6 else ICMP(type=8, code=0))
    else:
        return None
    return pkt


def write_pcap(entries: Iterable[LogEntry], path: Path) -> int:
    """Write one packet per flow entry to ``path``; returns how many were written."""
    from scapy.utils import RawPcapWriter

    count = 0
    writer = RawPcapWriter(str(path), linktype=LINKTYPE_RAW, sync=False)
    try:
        writer.write_header(None)
        for e in entries:
            pkt = flow_packet(e)
            if pkt is None:
                continue
            sec = int(e.time)
            writer.write_packet(bytes(pkt), sec=sec, usec=int((e.time - sec) * 1e6))
            count += 1
    finally:
        writer.close()
    return count
