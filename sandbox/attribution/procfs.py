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


def parse_socket_table(text: str) -> SocketTable:
    """``/proc/<pid>/net/{tcp,tcp6,udp,udp6}``: each socket's endpoints and inode (the
    header and malformed lines are skipped; inode 0, a socket being torn down, too)."""
    table: SocketTable = {}
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 10:
            continue
        try:
            local, remote, inode = _endpoint(fields[1]), _endpoint(fields[2]), int(fields[9])
        except ValueError:
            continue
        if inode:
            table[(*local, *remote)] = inode
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
