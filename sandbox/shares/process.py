"""Who opened a shared file: the process behind a FUSE request's host pid, as the sandbox
knows it (its pid in the sandbox's pid namespace, its command line, its executable).

Best effort (the process may be gone already) and hostile: the command line is the
sandbox's text, capped here and shown through safetext by whatever displays it.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

MAX_CMDLINE = 500


@dataclass(frozen=True, slots=True)
class Asker:
    host_pid: int
    pid: int = 0  # inside the sandbox's pid namespace, 0 = unknown
    cmdline: str = ""
    exe: str = ""  # as the sandbox sees it (``/usr/bin/cat``), "" = unknown


def asker(host_pid: int, proc: Path = Path("/proc")) -> Asker:
    """What /proc says about ``host_pid`` (fields left empty where it says nothing)."""
    folder = proc / str(host_pid)
    pid, cmdline, exe = 0, "", ""
    with contextlib.suppress(OSError, ValueError):
        for line in (folder / "status").read_text(errors="replace").splitlines():
            if line.startswith("NSpid:"):
                pid = int(line.split()[-1])  # the innermost namespace's: the sandbox's
                break
    with contextlib.suppress(OSError):
        raw = (folder / "cmdline").read_bytes()[: MAX_CMDLINE * 4]
        cmdline = raw.replace(b"\0", b" ").strip().decode(errors="replace")[:MAX_CMDLINE]
    with contextlib.suppress(OSError):
        exe = os.readlink(folder / "exe")[:MAX_CMDLINE]
    return Asker(host_pid, pid, cmdline, exe.removesuffix(" (deleted)"))
