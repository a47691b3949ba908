"""Which sandbox process made a flow (process attribution), as the host tells the gateway.

The host's attribution service (sandbox/attribution/) answers a flow's 5-tuple with a
:class:`ProcessInfo`; the gateway copies it into the flow's log line (``LogEntry.pid``,
``uid``, ``exe``, ``cmdline``, ``parents``) and its pending item, and matches ``exe``
against ``Rule.exe``. The wire is one JSON object a line on a unix socket in the
session folder (``attribution.sock``): a :class:`Lookup` out, a :class:`ProcessInfo`
(or ``{"id": N}`` alone: not found) back, matched by ``id``.

Everything in a ProcessInfo comes from the sandbox's ``/proc``: hostile text, capped
here (``capped``) and neutralised where it is shown (``snitch/core/safetext.py``). The
``exe`` is the kernel's link to the program's file (the sandbox cannot forge it the way
it forges argv[0]), as seen inside the sandbox's filesystem.

Standard library only: it runs in the gateway too.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

ATTRIBUTION_SOCKET = "attribution.sock"  # in the session folder
MAX_EXE = 512  # characters of an executable path kept
MAX_CMDLINE = 1024  # characters of a command line kept
MAX_PARENTS = 16  # ancestors kept (nearest first)
UNKNOWN = "unknown"  # how text shows a flow whose process was not found in time


@dataclass(frozen=True, slots=True)
class Lookup:
    """A question to the attribution service: who owns this socket (the sandbox's
    side of a flow: its address and port, and the peer it talks to)."""

    id: int
    proto: str  # "tcp" or "udp"
    src: str
    sport: int
    dst: str
    dport: int

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Lookup:
        return cls(int(d["id"]), str(d["proto"]), str(d["src"]), int(d["sport"]),
                   str(d["dst"]), int(d["dport"]))  # fmt: skip


@dataclass(frozen=True, slots=True)
class ProcessInfo:
    """A sandbox process: ``pid`` in the sandbox's pid namespace, ``uid``, ``exe`` (the
    executable's path), ``cmdline`` (arguments joined by spaces), ``parents`` (the exe
    of each ancestor inside the sandbox, nearest first)."""

    pid: int
    uid: int
    exe: str
    cmdline: str = ""
    parents: tuple[str, ...] = field(default_factory=tuple)

    def capped(self) -> ProcessInfo:
        """The same, cut to the lengths the log keeps."""
        return ProcessInfo(self.pid, self.uid, self.exe[:MAX_EXE], self.cmdline[:MAX_CMDLINE],
                           tuple(p[:MAX_EXE] for p in self.parents[:MAX_PARENTS]))  # fmt: skip

    def log_fields(self) -> dict[str, Any]:
        """The ``LogEntry`` fields it sets (as ``to_dict`` writes them)."""
        out: dict[str, Any] = {"pid": self.pid, "uid": self.uid, "exe": self.exe}
        if self.cmdline:
            out["cmdline"] = self.cmdline
        if self.parents:
            out["parents"] = list(self.parents)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"pid": self.pid, "uid": self.uid, "exe": self.exe, "cmdline": self.cmdline,
                "parents": list(self.parents)}  # fmt: skip

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ProcessInfo | None:
        """A process from the wire, or None when ``d`` carries none or a malformed one."""
        try:
            pid, uid, exe = d["pid"], d["uid"], d["exe"]
            cmdline, parents = d.get("cmdline", ""), d.get("parents", [])
        except (KeyError, TypeError):
            return None
        if not (isinstance(pid, int) and isinstance(uid, int) and isinstance(exe, str)):
            return None
        if not isinstance(cmdline, str) or not isinstance(parents, list):
            return None
        if not all(isinstance(p, str) for p in parents):
            return None
        return cls(pid, uid, exe, cmdline, tuple(parents)).capped()


def describe_process(exe: str, pid: int, parents: list[str] | tuple[str, ...] = ()) -> str:
    """A short plain form, e.g. ``/usr/bin/curl (pid 12) ← /bin/sh``; UNKNOWN when no
    process was found. Raw text: neutralise it (safetext) before showing it."""
    if not exe and not pid:
        return UNKNOWN
    text = f"{exe or '?'} (pid {pid})"
    if parents:
        text += " ← " + " ← ".join(parents)
    return text
