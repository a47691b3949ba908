"""Held opens of shared files (ask mode): what a share's FUSE daemon asks the gateway
(``POST /v1/files/ask``), the query its item is judged by, and the rule a lasting
decision on it stores (the gateway's asker makes it).

The daemon (host side, sandbox/shares/) decides by the rules itself; it asks only when
no rule decides an open in ask mode, and waits for the answer. Everything in an ask
comes from the sandbox (the file's name, the asking process's command line): it is
checked for type and size here and shown through safetext by whoever displays it.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from typing import Any

from snitch.core.model import Action, DecisionRequest, Pending, Proto, Query, Rule, Target
from snitch.core.policy import FILE_ACCESS

MAX_PATH = 4096
MAX_CMDLINE = 1000
GLOB_CHARS = "*?["


@dataclass(frozen=True, slots=True)
class FileAsk:
    """One open waiting for a decision: ``path`` as the person knows it (``~/...``, what
    rules match), ``shown`` as the sandbox sees it, ``access`` read or write, the
    asking process (``pid`` inside the sandbox, 0 = unknown, and its ``cmdline``)."""

    path: str
    shown: str
    access: str
    pid: int = 0
    cmdline: str = ""
    exe: str = ""  # the asking program as the sandbox sees it (``/usr/bin/cat``)

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "shown": self.shown, "access": self.access,
                "pid": self.pid, "cmdline": self.cmdline, "exe": self.exe}  # fmt: skip

    @classmethod
    def from_dict(cls, d: Any) -> FileAsk:
        """Checked: ValueError (the API's 400) for anything malformed."""
        if not isinstance(d, dict):
            raise ValueError("a file ask is a JSON object")
        path, shown, access = d.get("path"), d.get("shown", ""), d.get("access")
        pid, cmdline, exe = d.get("pid", 0), d.get("cmdline", ""), d.get("exe", "")
        for name, value in (("path", path), ("shown", shown)):
            if not isinstance(value, str) or "\0" in value or len(value) > MAX_PATH:
                raise ValueError(f"bad {name} (a path of at most {MAX_PATH} characters)")
        if not path:
            raise ValueError("no path")
        if access not in FILE_ACCESS:
            raise ValueError(f"bad access {access!r} (want read or write)")
        if not isinstance(pid, int) or isinstance(pid, bool) or pid < 0:
            raise ValueError("bad pid")
        if not isinstance(cmdline, str) or not isinstance(exe, str):
            raise ValueError("bad cmdline or exe")
        return cls(str(path), str(shown), str(access), pid, cmdline[:MAX_CMDLINE],
                   exe[:MAX_PATH])  # fmt: skip


def file_query(item: Pending) -> Query:
    """What the rules judge a held open by (the session's context is added by the rule
    book)."""
    return Query(Proto.FILE, exe=item.exe or None, file=item.path, access=item.access or None)


def glob_escape(path: str) -> str:
    """``path`` as a glob that matches only itself: a file the sandbox named ``*`` must
    never become a rule for its whole folder."""
    return "".join(f"[{c}]" if c in GLOB_CHARS else c for c in path)


def folder_glob(path: str) -> str:
    """Every file directly in ``path``'s folder: ``~/.aws/credentials`` -> ``~/.aws/*``."""
    parent = posixpath.dirname(path)
    return f"{glob_escape(parent).rstrip('/')}/*"


def file_rule(item: Pending, request: DecisionRequest) -> Rule:
    """The lasting rule a decision on a file item means: the file (Target.HOST) or its
    folder (Target.DOMAIN); this access (``port`` "this") or both ("any")."""
    if request.target is Target.HOST:
        glob = glob_escape(item.path)
    elif request.target is Target.DOMAIN:
        glob = folder_glob(item.path)
    else:
        raise ValueError("a file rule is for the file (target host) or its folder (domain)")
    access = item.access if request.port == "this" and item.access else None
    return Rule(action=Action(request.action), proto=Proto.FILE, file=glob, access=access,
                source="prompt", note=request.note)  # fmt: skip
