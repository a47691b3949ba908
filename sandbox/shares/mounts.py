"""Starting and removing a session's share daemons and their FUSE mounts.

Each share of a run is mounted at ``<session folder>/shares/<n>/`` by its own daemon
(sandbox/shares/daemon.py), started before the sandbox is created (a bind mount needs
the mount to exist) and bound into the sandbox from there. Beside each mount point,
``<n>.pid`` holds the daemon's pid and ``owner`` the run's: the run unmounts and stops
them when it ends; ``coderun gc`` does it for runs that died (their owner is gone).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from sandbox.shares.spec import Share
from snitch.core.session_dir import FILES_LOG

MOUNT_TIMEOUT = 10.0


class ShareError(RuntimeError):
    pass


@dataclass(frozen=True)
class Deciding:
    """How a run's share daemons decide opens (sandbox/shares/gate.py): the mode, the
    rules in force (the store, the run's policy file, the session's scopes), the home
    that ``~`` in file rules means, and the gateway that asks a person (ask mode)."""

    mode: str = "audit"
    rules: Path | None = None
    policy: Path | None = None
    profile: str = ""
    image: str = ""
    home: str = ""
    api: Path | None = None
    token_file: Path | None = None
    ask_timeout: float = 60.0

    def args(self) -> list[str]:
        out = ["--mode", self.mode, "--ask-timeout", str(self.ask_timeout)]
        named = (("--rules", self.rules), ("--policy", self.policy), ("--profile", self.profile),
                 ("--image", self.image), ("--home", self.home), ("--api", self.api),
                 ("--token-file", self.token_file))  # fmt: skip
        for flag, value in named:
            if value:
                out += [flag, str(value)]
        return out


@dataclass
class Mounted:
    share: Share
    mount: Path
    process: subprocess.Popen[bytes]

    def volume_spec(self) -> str:
        source = self.mount / self.share.only if self.share.only else self.mount
        return f"{source}:{self.share.target}:{'rw' if self.share.writable else 'ro'}"


@dataclass
class SessionShares:
    folder: Path  # <session folder>/shares
    mounted: list[Mounted] = field(default_factory=list)

    def volume_specs(self) -> list[str]:
        return [m.volume_spec() for m in self.mounted]

    def stop(self) -> None:
        for m in self.mounted:
            unmount(m.mount)
            with contextlib.suppress(ProcessLookupError):
                m.process.terminate()
            try:
                m.process.wait(3)
            except subprocess.TimeoutExpired:
                m.process.kill()
                m.process.wait()
        self.mounted.clear()


def start_shares(shares: list[Share], session_dir: Path, session: str,
                 max_bytes: int, deciding: Deciding | None = None) -> SessionShares:  # fmt: skip
    folder = session_dir / "shares"
    folder.mkdir(mode=0o700, exist_ok=True)
    (folder / "owner").write_text(str(os.getpid()))
    out = SessionShares(folder)
    try:
        for n, share in enumerate(shares):
            mount = folder / str(n)
            mount.mkdir(mode=0o755)
            cmd = [sys.executable, "-m", "sandbox.shares.daemon", "--root", str(share.folder),
                   "--mount", str(mount), "--target", share.target,
                   "--max-bytes", str(max_bytes), "--log", str(session_dir / FILES_LOG),
                   "--session", session, *(deciding or Deciding()).args()]  # fmt: skip
            if share.only:
                cmd += ["--only", share.only]
            if share.writable:
                cmd.append("--rw")
            if share.masked is not None:  # placeholders only: no real value is in it
                masked = folder / f"{n}.masked"
                fd = os.open(masked, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "wb") as f:
                    f.write(share.masked)
                cmd += ["--masked", str(masked)]
            with open(folder / f"{n}.err", "wb") as err:
                process = subprocess.Popen(cmd, start_new_session=True, stdin=subprocess.DEVNULL,
                                           stdout=subprocess.DEVNULL, stderr=err)  # fmt: skip
            out.mounted.append(Mounted(share, mount, process))
            (folder / f"{n}.pid").write_text(str(process.pid))
            _wait_mounted(mount, process)
    except BaseException:
        out.stop()
        raise
    return out


def _wait_mounted(mount: Path, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + MOUNT_TIMEOUT
    while not is_fuse_mount(mount):
        if process.poll() is not None:
            err = mount.with_name(f"{mount.name}.err").read_text(errors="replace")
            raise ShareError(f"the share daemon for {mount} failed: {err.strip()[-500:]}")
        if time.monotonic() > deadline:
            raise ShareError(f"the share at {mount} was not mounted in {MOUNT_TIMEOUT:.0f}s")
        time.sleep(0.02)


def fuse_mounts() -> list[str]:
    """Mount points of coderun's share filesystems (from /proc/self/mountinfo)."""
    found = []
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            fields = line.split()
            sep = fields.index("-")
            if fields[sep + 1].startswith("fuse") and fields[sep + 2] == "coderun-share":
                found.append(fields[4].replace("\\040", " "))
    return found


def is_fuse_mount(mount: Path) -> bool:
    return str(mount) in fuse_mounts()


def unmount(mount: Path) -> None:
    """Lazy unmount (a container may still hold it); silent if it is not mounted."""
    if is_fuse_mount(mount):
        subprocess.run(["fusermount3", "-u", "-z", str(mount)], capture_output=True, check=False)


def gc_shares(sessions_dir: Path) -> list[str]:
    """Unmount and stop the shares of runs that are gone (``coderun gc``)."""
    removed = []
    for mount in fuse_mounts():
        path = Path(mount)
        folder = path.parent
        if folder.name != "shares" or folder.parent.parent != sessions_dir:
            continue
        try:
            owner = int((folder / "owner").read_text())
        except (OSError, ValueError):
            owner = 0
        if owner and Path(f"/proc/{owner}").exists():
            continue  # its run still goes (it unmounts them itself)
        unmount(path)
        with contextlib.suppress(OSError, ValueError, ProcessLookupError):
            pid = int((folder / f"{path.name}.pid").read_text())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            if b"sandbox.shares.daemon" in cmdline and mount.encode() in cmdline:
                os.kill(pid, signal.SIGTERM)  # only if that pid is still this mount's daemon
        removed.append(mount)
    return removed
