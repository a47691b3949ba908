"""Reading a non-blocking netlink socket from the event loop (nflog.py, ctcounters.py)."""

from __future__ import annotations

import errno
import socket
from collections.abc import Callable

BATCHES = 64  # datagrams read at most per call: then the loop breathes


def drain(
    sock: socket.socket, size: int, take: Callable[[bytes], None],
    overflow: Callable[[], None] | None = None,
) -> None:  # fmt: skip
    """Hand each datagram waiting on ``sock`` to ``take``; ENOBUFS (the kernel dropped
    messages: its buffer was full) calls ``overflow`` and reading goes on."""
    for _ in range(BATCHES):
        try:
            data = sock.recv(size)
        except BlockingIOError:
            return
        except OSError as exc:
            if exc.errno != errno.ENOBUFS:
                raise
            if overflow is not None:
                overflow()
            continue
        take(data)
