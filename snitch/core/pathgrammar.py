"""The words of request and file rules (the grammar's other half, snitch/core/grammar.py):
HTTP methods (``get,head`` -> ``GET,HEAD``), URL path prefixes (``/v1/``, ``/v1/*``), a
request URL's path and folder, and path globs (``~/.aws/*``, ``**/.env``)."""

from __future__ import annotations

import functools
import re
import urllib.parse

HTTP_METHODS = frozenset(
    {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE"}
)


def normalize_methods(text: str) -> str:
    """``get,head`` -> ``GET,HEAD`` (sorted, unique); ValueError for an unknown method."""
    methods = {m.strip().upper() for m in text.split(",") if m.strip()}
    if not methods:
        raise ValueError("no HTTP method given (want e.g. GET or GET,HEAD)")
    bad = sorted(methods - HTTP_METHODS)
    if bad:
        raise ValueError(
            f"unknown HTTP method {bad[0]!r} (want one of {', '.join(sorted(HTTP_METHODS))})"
        )
    return ",".join(sorted(methods))


def normalize_path_prefix(text: str) -> str:
    """A URL path prefix as typed: ``/v1/`` or ``/v1/*`` (a trailing ``*`` says the same:
    every path starting with ``/v1/``) -> ``/v1/``; ValueError for anything else (no
    other wildcard, no space or control character, must start with ``/``)."""
    prefix = text[:-1] if text.endswith("*") else text
    if not prefix.startswith("/"):
        raise ValueError(f"bad path {text!r} (must start with /, e.g. /v1/ or /v1/*)")
    if any(c in "*?" or c.isspace() or not c.isprintable() for c in prefix):
        raise ValueError(
            f"bad path {text!r} (a prefix such as /v1/; only a trailing * is a wildcard)"
        )
    return prefix


def url_path(url: str) -> str:
    """The path and query of a URL (what a request rule's path prefix is matched with)."""
    parts = urllib.parse.urlsplit(url)
    return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")


def request_folder(path: str) -> str:
    """The folder of a request's URL path, as a path prefix: ``/v1/items/7?x=1`` ->
    ``/v1/items/``; ``/`` for a path without one."""
    path = path.split("?", 1)[0].split("#", 1)[0]
    if not path.startswith("/"):
        return "/"
    return path[: path.rfind("/") + 1]


@functools.lru_cache(maxsize=1024)
def _glob_regex(glob: str) -> re.Pattern[str]:
    """A path glob as a regex: ``*``/``?``/``[...]`` within one path segment, ``**`` any
    number of whole segments (``**/.env`` matches ``.env`` and ``a/b/.env``)."""
    parts: list[str] = []
    segments = glob.split("/")
    for i, seg in enumerate(segments):
        last = i == len(segments) - 1
        if seg == "**":
            parts.append(".*" if last else "(?:[^/]*/)*")
            continue
        out, j = [], 0
        while j < len(seg):
            c = seg[j]
            if c == "*":
                out.append("[^/]*")
            elif c == "?":
                out.append("[^/]")
            elif c == "[" and "]" in seg[j + 2 :]:
                k = seg.index("]", j + 2)
                body = seg[j + 1 : k]
                neg = body.startswith("!")
                body = body[1:] if neg else body
                out.append(f"[{'^' if neg else ''}{re.escape(body)}]")
                j = k
            else:
                out.append(re.escape(c))
            j += 1
        parts.append("".join(out) + ("" if last else "/"))
    return re.compile("".join(parts) + r"\Z", re.DOTALL)


def path_glob_matches(glob: str, path: str) -> bool:
    """Whether ``path`` matches the path glob ``glob`` (``~/.aws/*``, ``**/.env``)."""
    return _glob_regex(glob).match(path) is not None


def glob_literal_length(glob: str) -> int:
    """How specific a path glob is: its characters that are not wildcards."""
    return sum(1 for c in glob if c not in "*?[]")
