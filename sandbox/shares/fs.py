"""The share's FUSE filesystem (mfusepy over Debian's libfuse3), run by the host's daemon.

It serves one host folder (or one file of it) and never lets a path lead out of it:

- every path's folder is resolved (``realpath``) and must stay inside the share: a
  symlink in the share is shown as a symlink (the sandbox's kernel resolves it inside the
  sandbox), never followed by the daemon; files are opened with ``O_NOFOLLOW``;
- the sandbox cannot make symlinks, hard links or device nodes in it, nor set setuid or
  setgid bits; a read-only share refuses every change (``EROFS``); a file of a writable
  share cannot grow past ``max_bytes`` (``EFBIG``);
- every open is reported to ``on_open(path, write, pid, "")`` (the host pid of the
  process that asked) before the file is opened, and so is every change that opens
  nothing (``unlink``, ``rename`` — both names —, ``truncate`` by path, ``rmdir``: a
  write, named in the last argument); an ``EACCES`` it raises is the sandbox's
  ``Permission denied``; each release reports the bytes read and written
  (``on_close``). The daemon runs it in several threads: the byte counts take a lock.

If the daemon dies, the kernel answers the sandbox's calls with ``ENOTCONN``: the raw
files are never exposed.
"""

from __future__ import annotations

import errno
import os
import stat
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import mfusepy

# path, write, pid, what (an open: ""; else the change: unlink, rename, truncate, rmdir);
# raises FuseOSError to refuse
OnOpen = Callable[[str, bool, int, str], None]
OnClose = Callable[[str, int, int], None]  # path, bytes read, bytes written
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC


def refuse(code: int) -> mfusepy.FuseOSError:
    return mfusepy.FuseOSError(code)


class ShareFS(mfusepy.Operations):  # type: ignore[misc]
    use_ns = True  # utimens gets nanoseconds

    def __init__(self, root: Path, only: str | None, writable: bool, max_bytes: int,
                 on_open: OnOpen, on_close: OnClose,
                 masked: bytes | None = None) -> None:  # fmt: skip
        self.root = os.path.realpath(root)
        self.only = only
        # --secret-file: the one file's text as the sandbox reads it (never the real bytes)
        self.masked = masked if only is not None and not writable else None
        self.writable = writable
        self.max_bytes = max_bytes
        self.on_open = on_open
        self.on_close = on_close
        self.counts: dict[int, list[int]] = {}  # fh -> [read, written]
        self.paths: dict[int, str] = {}
        self._lock = threading.Lock()

    # -- paths ------------------------------------------------------------------------------
    def _inside(self, path: str) -> bool:
        return path == self.root or path.startswith(self.root + os.sep)

    def _full(self, path: str) -> str:
        """The host path of a share path; its folder must resolve inside the share."""
        parts = [p for p in path.split("/") if p]
        if any(p in (".", "..") for p in parts):
            raise refuse(errno.EACCES)
        if self.only is not None and parts and parts != [self.only]:
            raise refuse(errno.ENOENT)  # a file share shows that file only
        if not parts:
            return self.root
        parent = os.path.realpath(os.path.join(self.root, *parts[:-1]))
        if not self._inside(parent):
            raise refuse(errno.EACCES)
        return os.path.join(parent, parts[-1])

    def _change(self) -> None:
        if not self.writable:
            raise refuse(errno.EROFS)

    # -- reading ----------------------------------------------------------------------------
    def getattr(self, path: str, fh: int | None = None) -> dict[str, Any]:
        st = os.lstat(self._full(path))
        keys = ("st_mode", "st_nlink", "st_size", "st_uid", "st_gid", "st_atime", "st_mtime",
                "st_ctime")  # fmt: skip
        out = {k: getattr(st, k) for k in keys}
        out["st_mode"] &= ~(stat.S_ISUID | stat.S_ISGID)
        if self.masked is not None and stat.S_ISREG(st.st_mode):
            out["st_size"] = len(self.masked)
        return out

    def readdir(self, path: str, fh: int) -> list[str]:
        full = self._full(path)
        if self.only is not None:
            return [".", "..", self.only]
        return [".", "..", *os.listdir(full)]

    def readlink(self, path: str) -> str:
        return os.readlink(self._full(path))  # shown, never followed here

    def statfs(self, path: str) -> dict[str, int]:
        sv = os.statvfs(self._full(path))
        keys = ("f_bavail", "f_bfree", "f_blocks", "f_bsize", "f_favail", "f_ffree", "f_files",
                "f_flag", "f_frsize", "f_namemax")  # fmt: skip
        return {k: getattr(sv, k) for k in keys}

    def open(self, path: str, flags: int) -> int:
        write = bool(flags & WRITE_FLAGS)
        if write:
            self._change()
        full = self._full(path)
        self.on_open(path, write, mfusepy.fuse_get_context()[2], "")
        fh = os.open(full, (flags & ~os.O_CREAT) | os.O_NOFOLLOW)
        self._opened(fh, path)
        return fh

    def create(self, path: str, mode: int, fi: Any = None) -> int:
        self._change()
        full = self._full(path)
        self.on_open(path, True, mfusepy.fuse_get_context()[2], "")
        fh = os.open(full, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode & 0o777)
        self._opened(fh, path)
        return fh

    def _changing(self, path: str, what: str) -> None:
        """A change that opens nothing is decided as a write of ``path``."""
        self.on_open(path, True, mfusepy.fuse_get_context()[2], what)

    def _opened(self, fh: int, path: str) -> None:
        with self._lock:
            self.counts[fh] = [0, 0]
            self.paths[fh] = path

    def _count(self, fh: int, which: int, n: int) -> None:
        with self._lock:
            self.counts.setdefault(fh, [0, 0])[which] += n

    def read(self, path: str, size: int, offset: int, fh: int) -> bytes:
        if self.masked is not None:
            data = self.masked[offset : offset + size]
        else:
            data = os.pread(fh, size, offset)
        self._count(fh, 0, len(data))
        return data

    def release(self, path: str, fh: int) -> int:
        with self._lock:
            read, written = self.counts.pop(fh, [0, 0])
            opened = self.paths.pop(fh, path)
        self.on_close(opened, read, written)
        os.close(fh)
        return 0

    # -- writing (a writable share) ---------------------------------------------------------
    def write(self, path: str, data: bytes, offset: int, fh: int) -> int:
        self._change()
        if offset + len(data) > self.max_bytes:
            raise refuse(errno.EFBIG)
        written = os.pwrite(fh, data, offset)
        self._count(fh, 1, written)
        return written

    def truncate(self, path: str, length: int, fh: int | None = None) -> int:
        self._change()
        if length > self.max_bytes:
            raise refuse(errno.EFBIG)
        if fh is not None:
            os.ftruncate(fh, length)
        else:
            self._changing(path, "truncate")
            fd = os.open(self._full(path), os.O_WRONLY | os.O_NOFOLLOW)
            try:
                os.ftruncate(fd, length)
            finally:
                os.close(fd)
        return 0

    def unlink(self, path: str) -> int:
        self._change()
        self._changing(path, "unlink")
        os.unlink(self._full(path))
        return 0

    def mkdir(self, path: str, mode: int) -> int:
        self._change()
        os.mkdir(self._full(path), mode & 0o777)
        return 0

    def rmdir(self, path: str) -> int:
        self._change()
        self._changing(path, "rmdir")
        os.rmdir(self._full(path))
        return 0

    def rename(self, old: str, new: str) -> int:
        self._change()
        self._changing(old, "rename")
        self._changing(new, "rename")
        os.rename(self._full(old), self._full(new))
        return 0

    def chmod(self, path: str, mode: int) -> int:
        self._change()
        os.chmod(self._full(path), mode & 0o777, follow_symlinks=False)  # no setuid/setgid
        return 0

    def utimens(self, path: str, times: tuple[int, int] | None = None) -> int:
        self._change()
        if times is None:
            os.utime(self._full(path), follow_symlinks=False)
        else:
            os.utime(self._full(path), ns=times, follow_symlinks=False)
        return 0

    def chown(self, path: str, uid: int, gid: int) -> int:
        raise refuse(errno.EPERM)

    def symlink(self, target: str, source: str) -> int:
        raise refuse(errno.EPERM)

    def link(self, target: str, source: str) -> int:
        raise refuse(errno.EPERM)

    def mknod(self, path: str, mode: int, dev: int) -> int:
        raise refuse(errno.EPERM)
