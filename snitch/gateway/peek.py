"""What a web connection's first data packet says: a TLS ClientHello's SNI, or an HTTP
request line and its Host (``struct`` and bytes only: this runs on the packet path).

Everything here is hostile input; the results are bounded, lower-cased where they are
names, and the callers make them safe (snitch/core/safetext.py) before any terminal.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_NAME = 253
MAX_URL = 2048
METHODS = frozenset(
    b"GET HEAD POST PUT DELETE CONNECT OPTIONS TRACE PATCH PROPFIND MKCOL COPY MOVE LOCK".split()
)
NAME_BYTES = frozenset(b"abcdefghijklmnopqrstuvwxyz0123456789-_.")
# What a request line may still become: a method cut short (a hostile client sends its
# head a byte at a time), and the empty lines a server skips before it (RFC 9112 2.2).
METHOD_STARTS = frozenset(m[:i] for m in METHODS for i in range(len(m) + 1))
EMPTY_LINES = b"\r\n"
# A Host header anywhere in bytes that are not a well-formed request line: lenient
# servers read requests this parser does not (a tab for a space, a doubled space).
HOST_LINE = re.compile(rb"(?:^|\n)[ \t]*host[ \t]*:[ \t]*([^\r\n]*)", re.IGNORECASE)


@dataclass(frozen=True)
class Seen:
    """The first bytes of a connection, read: ``tls`` (with ``sni``, maybe ""), ``http``
    (``method``, ``host``, ``path``) or ``other``; ``partial`` when the message goes on
    past this packet (a ClientHello split across segments)."""

    kind: str
    sni: str = ""
    method: str = ""
    host: str = ""
    path: str = ""
    partial: bool = False


def head_length(data: bytes) -> int:
    """The length of the HTTP head (request or response) that begins ``data``, up to
    its blank line (0 when it does not end within ``data``)."""
    end = data.find(b"\r\n\r\n")
    return end + 4 if end >= 0 else 0


def looks_like_tls(data: bytes) -> bool:
    return len(data) >= 3 and data[0] == 0x16 and data[1] == 0x03 and data[2] <= 0x04


def read(data: bytes) -> Seen:
    """What ``data``, a connection's first bytes, says; ``partial`` while more bytes
    could still change it (the caller refuses a head that stays partial too long)."""
    if data[:1] == b"\x16" and len(data) < 5:
        return Seen("tls", partial=True)  # a record header cut short
    if looks_like_tls(data):
        return read_client_hello(data)
    start = data.lstrip(EMPTY_LINES)
    if start in METHOD_STARTS:
        return Seen("other", partial=True)
    if start.split(b" ", 1)[0] in METHODS:
        seen = read_http(start)
        if seen.kind == "http":
            return seen
    return read_other(start)


def read_other(data: bytes) -> Seen:
    """Bytes that are not a request line this parser reads: ``other``, with the name of
    any Host header among them (judged as a request's would be)."""
    found = HOST_LINE.search(data)
    if found is None:
        return Seen("other")
    return Seen("other", host=_host(found.group(1).strip()))


def _name(raw: bytes) -> str:
    """A DNS name as the rules see it, or "" when it is not one."""
    name = raw.lower().rstrip(b".")
    if not name or len(name) > MAX_NAME or not NAME_BYTES.issuperset(name):
        return ""
    return name.decode("ascii")


def read_client_hello(data: bytes) -> Seen:
    """The SNI of a TLS ClientHello (record header, handshake header, then the
    fields up to the extensions); ``partial`` when the hello continues beyond ``data``."""
    try:
        record_len = int.from_bytes(data[3:5])
        body = data[5 : 5 + record_len]
        partial = len(body) < record_len
        if not body or body[0] != 0x01:  # not a ClientHello
            return Seen("tls", partial=partial)
        pos = 4 + 2 + 32  # handshake header, version, random
        pos += 1 + body[pos]  # session id
        pos += 2 + int.from_bytes(body[pos : pos + 2])  # cipher suites
        pos += 1 + body[pos]  # compression methods
        end = min(len(body), pos + 2 + int.from_bytes(body[pos : pos + 2]))
        pos += 2
        while pos + 4 <= end:
            kind = int.from_bytes(body[pos : pos + 2])
            size = int.from_bytes(body[pos + 2 : pos + 4])
            ext = body[pos + 4 : pos + 4 + size]
            if kind == 0:  # server_name: list length, then (type, length, name) entries
                if len(ext) < size:
                    return Seen("tls", partial=True)
                i = 2
                while i + 3 <= len(ext):
                    name_type, name_len = ext[i], int.from_bytes(ext[i + 1 : i + 3])
                    if name_type == 0:
                        return Seen("tls", sni=_name(ext[i + 3 : i + 3 + name_len]))
                    i += 3 + name_len
                return Seen("tls")
            pos += 4 + size
        return Seen("tls", partial=partial)
    except IndexError:
        return Seen("tls", partial=True)


def read_http(data: bytes) -> Seen:
    """Method, Host and path of an HTTP/1 request's head (as much as the packet holds).
    A path or Host that is not a name is kept as sent (UTF-8; hostile characters and
    all, as mitmproxy logs it: made safe where shown)."""
    line, _, rest = data.partition(b"\r\n")
    parts = line.split(b" ")
    if len(parts) != 3 or not parts[2].startswith(b"HTTP/"):
        return Seen("other")
    method, target = parts[0].decode("ascii"), parts[1][:MAX_URL]
    host = b""
    for header in rest.split(b"\r\n"):
        if not header:
            break
        key, sep, value = header.partition(b":")
        if sep and key.strip().lower() == b"host":
            host = value.strip()
            break
    partial = b"\r\n\r\n" not in data
    if target.startswith((b"http://", b"https://")):  # absolute form
        after = target.split(b"//", 1)[1]
        host_part, slash, path = after.partition(b"/")
        host, target = host or host_part, slash + path or b"/"
    return Seen(
        "http",
        method=method,
        host=_host(host),
        path=target.decode("utf-8", "replace"),
        partial=partial and not host,
    )


def _host(host: bytes) -> str:
    """A Host header's name (its port dropped), or the value as sent when it is none."""
    name = host.rsplit(b":", 1)[0] if host.count(b":") == 1 else host
    return _name(name) or name.decode("utf-8", "replace")[:MAX_NAME]
