"""Parse the 5-tuple of an IPv4 packet with ``struct`` (the hot path: no scapy here)."""

from __future__ import annotations

import socket
import struct

from snitch.core.model import FlowKey, Proto

_IPV4 = struct.Struct("!BBHHHBBH4s4s")
_PORTS = struct.Struct("!HH")
_ICMP = struct.Struct("!BBHHH")


class BadPacket(ValueError):
    """A packet too short or malformed to carry a flow."""


def parse_flow(data: bytes) -> FlowKey:
    """Return the flow of an IPv4 packet; for ICMP the ``dport`` is the ICMP type.

    Raises BadPacket for anything that is not a well-formed IPv4 TCP/UDP/ICMP header.
    """
    if len(data) < 20:
        raise BadPacket(f"{len(data)} bytes is shorter than an IPv4 header")
    ver_ihl, _tos, total, _ident, frag, _ttl, number, _csum, src, dst = _IPV4.unpack_from(data)
    if ver_ihl >> 4 != 4:
        raise BadPacket(f"IP version {ver_ihl >> 4}")
    ihl = (ver_ihl & 0x0F) * 4
    if ihl < 20 or ihl > len(data):
        raise BadPacket(f"header length {ihl}")
    proto = Proto.from_number(number)
    if proto is None:
        raise BadPacket(f"IP protocol {number}")
    src_s, dst_s = socket.inet_ntoa(src), socket.inet_ntoa(dst)
    if frag & 0x1FFF:
        # A non-first fragment carries no ports; it is judged as its own flow with port 0.
        return FlowKey(proto, src_s, 0, dst_s, 0)
    if proto is Proto.ICMP:
        if len(data) < ihl + 8:
            raise BadPacket("truncated ICMP header")
        icmp_type, _code, _c, ident, _seq = _ICMP.unpack_from(data, ihl)
        return FlowKey(proto, src_s, ident, dst_s, icmp_type)
    if len(data) < ihl + 4:
        raise BadPacket(f"truncated {proto} header")
    sport, dport = _PORTS.unpack_from(data, ihl)
    return FlowKey(proto, src_s, sport, dst_s, dport)


def tcp_flags(data: bytes) -> int:
    """The TCP flags byte of an IPv4 TCP packet (0 if too short)."""
    ihl = (data[0] & 0x0F) * 4
    return data[ihl + 13] if len(data) > ihl + 13 else 0


def tcp_seq(data: bytes) -> int:
    """The sequence number of an IPv4 TCP packet (-1 if too short): a retransmitted SYN
    repeats it, a new connection on the same 5-tuple does not."""
    if not data:
        return -1
    ihl = (data[0] & 0x0F) * 4
    return int.from_bytes(data[ihl + 4 : ihl + 8]) if len(data) >= ihl + 8 else -1


def tcp_payload(data: bytes) -> bytes:
    """The TCP payload of an IPv4 TCP packet (empty if none)."""
    ihl = (data[0] & 0x0F) * 4
    if len(data) < ihl + 20:
        return b""
    offset = (data[ihl + 12] >> 4) * 4
    return data[ihl + offset :]


def tcp_ack(data: bytes) -> int:
    """The acknowledgement number of an IPv4 TCP packet (-1 if too short)."""
    if not data:
        return -1
    ihl = (data[0] & 0x0F) * 4
    return int.from_bytes(data[ihl + 8 : ihl + 12]) if len(data) >= ihl + 12 else -1
