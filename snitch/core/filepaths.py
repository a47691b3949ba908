"""A file's path as the person knows it: what file rules are written against and matched with.

File rules are typed the way people think of their files (``~/.aws/*``); the share daemon
and ``coderun rules explain`` see host paths (``/home/ann/.aws/credentials``).
``shown_path`` is the one mapping between the two: pure, no file system access.
"""

from __future__ import annotations

import posixpath

HOME = "~"


def shown_path(host_path: str, home: str) -> str:
    """``host_path`` in the ``~/...`` form when it is ``home`` or under it, else as it is.

    Both are normalised lexically first (``//``, ``.`` and ``..`` folded, no trailing
    slash); symlinks are not resolved (the caller gives the path it opens). A ``home`` of
    ``/`` or empty maps nothing. ValueError for a relative ``host_path``.
    """
    if not host_path.startswith("/"):
        raise ValueError(f"not an absolute path: {host_path!r}")
    path = posixpath.normpath(host_path)
    if path.startswith("//"):  # normpath keeps a leading double slash (POSIX allows it)
        path = "/" + path.lstrip("/")
    base = posixpath.normpath(home) if home.startswith("/") else ""
    if base in ("", "/") or base.startswith("//"):
        return path
    if path == base:
        return HOME
    if path.startswith(base + "/"):
        return HOME + path[len(base) :]
    return path
