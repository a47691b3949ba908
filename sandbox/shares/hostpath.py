"""A host path as the person knows it (``~/...`` under their home): what file rules are
written against and matched with."""

from __future__ import annotations

import posixpath


def shown_path(host_path: str, home: str) -> str:
    """``host_path`` in the ``~/...`` form when it is ``home`` or under it, else as it is
    (both normalised lexically; a home of ``/`` maps nothing)."""
    path = posixpath.normpath(host_path)
    base = posixpath.normpath(home) if home.startswith("/") else ""
    if base in ("", "/"):
        return path
    if path == base:
        return "~"
    if path.startswith(base + "/"):
        return "~" + path[len(base) :]
    return path
