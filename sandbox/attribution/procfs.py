"""Parsing ``/proc`` text for process attribution: pure functions, tested on fixtures.

Everything here reads the sandbox's own ``/proc`` entries: hostile input. Nothing is
trusted beyond its format (a bad line is skipped), and lengths are capped by the caller
(``ProcessInfo.capped``).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

# (local address, local port, remote address, remote port) -> socket inode
SocketTable = dict[tuple[str, int, str, int], int]
ANY4, ANY6 = "0.0.0.0", "::"


def _address(hex_addr: str) -> str:
    """``0100007F`` -> ``127.0.0.1``; 32 hex digits (four little-endian words) -> IPv6,
    an IPv4-mapped one as its IPv4 form."""
    raw = bytes.fromhex(hex_addr)
    if len(raw) == 4:
        return str(ipaddress.IPv4Address(raw[::-1]))
    if len(raw) != 16:
        raise ValueError(f"bad address {hex_addr!r}")
    ordered = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
    v6 = ipaddress.IPv6Address(ordered)
    return str(v6.ipv4_mapped) if v6.ipv4_mapped is not None else str(v6)


def _endpoint(text: str) -> tuple[str, int]:
    addr, _, port = text.partition(":")
    return _address(addr), int(port, 16)


def _parse_line(line: str) -> tuple[str, int, str, int, int] | None:
    """One socket-table line -> (local address, port, remote address, port, inode)."""
    fields = line.split()
    if len(fields) < 10:
        return None
    try:
        local, remote, inode = _endpoint(fields[1]), _endpoint(fields[2]), int(fields[9])
    except ValueError:
        return None
    return (*local, *remote, inode)


def parse_socket_table(text: str) -> SocketTable:
    """``/proc/<pid>/net/{tcp,tcp6,udp,udp6}``: each socket's endpoints and inode (the
    header and malformed lines are skipped; inode 0, a socket being torn down, too)."""
    table: SocketTable = {}
    for line in text.splitlines()[1:]:
        parsed = _parse_line(line)
        if parsed is not None and parsed[4]:
            table[parsed[:4]] = parsed[4]
    return table


def find_inode(table: SocketTable, src: str, sport: int, dst: str, dport: int) -> int | None:
    """The socket of a flow from ``src:sport`` to ``dst:dport``: the connected one, else
    (UDP ``sendto`` on an unconnected socket) the one bound to ``sport``."""
    exact = table.get((src, sport, dst, dport))
    if exact is not None:
        return exact
    for local in (src, ANY4, ANY6):
        for remote in ((ANY4, 0), (ANY6, 0)):
            unconnected = table.get((local, sport, *remote))
            if unconnected is not None:
                return unconnected
    return None


def kernel_hex(address: str, ipv6_table: bool) -> str:
    """An address as the socket tables print it (each 32-bit word in host order, the
    machine being little-endian); an IPv4 one in an IPv6 table IPv4-mapped."""
    ip = ipaddress.ip_address(address)
    if ipv6_table and ip.version == 4:
        ip = ipaddress.IPv6Address(f"::ffff:{address}")
    raw = ip.packed
    return "".join(raw[i : i + 4][::-1].hex().upper() for i in range(0, len(raw), 4))


def search_socket_table(
    text: str, src: str, sport: int, dst: str, dport: int, ipv6_table: bool
) -> int | None:
    """``find_inode`` without parsing the whole table: only the lines whose local end is
    ``src:sport`` (or the wildcard address) are read. A busy namespace's table holds
    thousands of closed (TIME_WAIT) sockets; parsing them all took ~100 ms."""
    wildcard = ANY6 if ipv6_table else ANY4
    try:
        locals_ = [kernel_hex(src, ipv6_table), kernel_hex(wildcard, ipv6_table)]
    except ValueError:
        return None
    found: SocketTable = {}
    for local in locals_:
        needle = f" {local}:{sport:04X} "
        at = text.find(needle)
        while at >= 0:
            start, end = text.rfind("\n", 0, at) + 1, text.find("\n", at)
            parsed = _parse_line(text[start : end if end >= 0 else len(text)])
            if parsed is not None and parsed[4]:
                found[parsed[:4]] = parsed[4]
            at = text.find(needle, at + 1)
    return find_inode(found, src, sport, dst, dport) if found else None


def socket_inode(link: str) -> int | None:
    """``socket:[12345]`` (an fd's link) -> 12345; anything else -> None."""
    if link.startswith("socket:[") and link.endswith("]"):
        try:
            return int(link[8:-1])
        except ValueError:
            return None
    return None


@dataclass(frozen=True, slots=True)
class Status:
    """What ``/proc/<pid>/status`` says: the pid in the innermost pid namespace (last
    field of ``NSpid``), the parent's pid (in the reader's namespace) and the real uid."""

    nspid: int
    ppid: int
    uid: int


def parse_status(text: str) -> Status | None:
    values: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key in ("NSpid", "PPid", "Uid", "Pid"):
            values[key] = value
    try:
        nspid = (values.get("NSpid") or values["Pid"]).split()[-1]
        return Status(int(nspid), int(values["PPid"]), int(values["Uid"].split()[0]))
    except (KeyError, IndexError, ValueError):
        return None


def parse_cmdline(raw: bytes) -> str:
    """NUL-separated arguments -> one line (spaces between them; undecodable bytes kept
    as escapes: the text is neutralised again where it is shown)."""
    return " ".join(raw.rstrip(b"\0").decode("utf-8", "backslashreplace").split("\0"))
