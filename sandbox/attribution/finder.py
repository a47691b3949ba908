"""Find the sandbox process that owns a flow's socket, given a container's init pid.

The sandbox's network namespace is read through ``/proc/<init>/net/{tcp,udp}{,6}``
(the socket's inode); its processes are those whose ``/proc/P/ns/pid`` is the init's;
their ``/proc/P/fd`` links say which holds the inode. Works for any container (the pod
topology gives another init pid): nothing here knows about Docker.

Costs are kept down by caching: which host pids belong to the sandbox (a pid is
classified once, forgotten when it leaves ``/proc``) and which pid holds which socket
inode (rebuilt by a scan of the sandbox's fds only when an inode is not known yet).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from sandbox.attribution.diag import TcpDiag
from sandbox.attribution.procfs import (
    Status,
    parse_cmdline,
    parse_status,
    search_socket_table,
    socket_inode,
)
from snitch.core.process import MAX_PARENTS, ProcessInfo

log = logging.getLogger(__name__)

TABLES = {"tcp": ("tcp", "tcp6"), "udp": ("udp", "udp6")}


class ProcessFinder:
    """Answers "which process owns this flow?" for the processes of one pid namespace
    (the container whose init has host pid ``init_pid``); ``proc`` is ``/proc`` (a
    fixture folder in tests)."""

    def __init__(self, init_pid: int, proc: Path = Path("/proc")) -> None:
        self.init_pid = init_pid
        self.proc = proc
        self.pid_ns = os.readlink(proc / str(init_pid) / "ns" / "pid")
        self._members: dict[int, bool] = {}  # host pid -> in the sandbox's pid namespace
        self._owners: dict[int, tuple[int, str]] = {}  # socket inode -> (host pid, fd)
        self._shared: dict[int, list[int]] = {}  # inode -> every pid holding it, if several
        self.scans = 0  # fd scans done (a cache miss each)
        # IPv4 TCP sockets are asked of the kernel by netlink (diag.py): reading
        # /proc/net/tcp walks every TCP socket of the machine, ~100 ms when busy.
        self.diag: TcpDiag | None = None
        try:
            self.diag = TcpDiag(init_pid, proc)
        except OSError as exc:  # not root, or a fixture tree: the tables alone
            log.debug("attribution: no sock_diag (%s): reading /proc/net", exc)

    def close(self) -> None:
        if self.diag is not None:
            self.diag.close()
            self.diag = None

    def find(self, proto: str, src: str, sport: int, dst: str, dport: int) -> ProcessInfo | None:
        inode = self.inode(proto, src, sport, dst, dport)
        if inode is None:
            return None
        pid = self.owner(inode)
        if pid is None:
            return None
        holders = self._shared.get(inode)
        if holders is not None and len({self._exe(p) for p in holders if self.is_member(p)}) > 1:
            # Held by different programs (a socket inherited across fork and exec): which
            # one asked is not known, and naming one would let a program borrow another's
            # exe rule (make the socket, start an allowed program holding it, connect).
            return None
        return self.process(pid)

    def inode(self, proto: str, src: str, sport: int, dst: str, dport: int) -> int | None:
        if proto == "tcp" and self.diag is not None and ":" not in src:
            try:
                return self.diag.inode(src, sport, dst, dport)
            except OSError as exc:
                log.debug("attribution: sock_diag failed (%s): reading /proc/net", exc)
                self.diag = None
        net = self.proc / str(self.init_pid) / "net"
        for name in TABLES.get(proto, ()):
            try:
                text = (net / name).read_text(errors="replace")
            except OSError:
                continue
            found = search_socket_table(text, src, sport, dst, dport, name.endswith("6"))
            if found is not None:
                return found
        return None

    def owner(self, inode: int) -> int | None:
        """The host pid holding socket ``inode`` (the cached one if it still does)."""
        known = self._owners.get(inode)
        if known is not None and self._link(known[0], known[1]) == f"socket:[{inode}]":
            return known[0]
        self._scan()
        known = self._owners.get(inode)
        return known[0] if known is not None else None

    def _link(self, pid: int, fd: str) -> str:
        try:
            return os.readlink(self.proc / str(pid) / "fd" / fd)
        except OSError:
            return ""

    def members(self) -> list[int]:
        """The host pids of the sandbox's processes now (a new pid is classified once;
        pids that left ``/proc`` are forgotten, so a reused pid is classified again)."""
        present = [int(e) for e in os.listdir(self.proc) if e.isdigit()]
        known, self._members = self._members, {}
        for pid in present:
            if pid in known:
                self._members[pid] = known[pid]
        return [pid for pid in present if self.is_member(pid)]

    def is_member(self, pid: int) -> bool:
        member = self._members.get(pid)
        if member is None:
            try:
                member = os.readlink(self.proc / str(pid) / "ns" / "pid") == self.pid_ns
            except OSError:
                return False  # gone already (or not ours to read)
            self._members[pid] = member
        return member

    def _scan(self) -> None:
        self.scans += 1
        owners: dict[int, tuple[int, str]] = {}
        shared: dict[int, list[int]] = {}
        for pid in self.members():
            fd_dir = self.proc / str(pid) / "fd"
            try:
                fds = os.listdir(fd_dir)
            except OSError:
                continue
            for fd in fds:
                try:
                    inode = socket_inode(os.readlink(fd_dir / fd))
                except OSError:
                    continue
                if inode is None:
                    continue
                known = owners.get(inode)
                if known is not None and known[0] != pid:
                    shared.setdefault(inode, [known[0]]).append(pid)
                # A socket shared after fork: the newest process (highest pid) holds it.
                if known is None or known[0] < pid:
                    owners[inode] = (pid, fd)
        self._owners = owners
        self._shared = shared

    def _status(self, pid: int) -> Status | None:
        try:
            return parse_status((self.proc / str(pid) / "status").read_text(errors="replace"))
        except OSError:
            return None

    def _exe(self, pid: int) -> str:
        try:
            return os.readlink(self.proc / str(pid) / "exe")
        except OSError:
            return ""

    def process(self, pid: int) -> ProcessInfo | None:
        """``pid``'s process (host pid) with its ancestors inside the sandbox."""
        status = self._status(pid)
        if status is None:
            return None
        try:
            cmdline = parse_cmdline((self.proc / str(pid) / "cmdline").read_bytes())
        except OSError:
            cmdline = ""
        parents: list[str] = []
        ppid = status.ppid
        while ppid > 0 and len(parents) < MAX_PARENTS and self.is_member(ppid):
            parent = self._status(ppid)
            if parent is None:
                break
            parents.append(self._exe(ppid) or "?")
            ppid = parent.ppid
        return ProcessInfo(status.nspid, status.uid, self._exe(pid), cmdline,
                           tuple(parents)).capped()  # fmt: skip
