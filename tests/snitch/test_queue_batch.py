"""The queue's reads come in batches (snitch/gateway/queue.py): a turn of the event loop
reads at most ``BATCH`` packets, so what shares the loop (the DNS forwarder, the API)
gets its turn during a flood. A socketpair stands in for the netlink socket; the loop
below is what ``NetfilterQueue.run_socket`` does with what it reads from."""

from __future__ import annotations

import errno
import socket

from snitch.gateway.queue import BATCH, Batch


def run_socket(s: Batch) -> list[bytes]:
    """netfilterqueue 1.1.0's run_socket: recv until EAGAIN (ENOBUFS is skipped)."""
    got = []
    while True:
        try:
            got.append(s.recv(4096))
        except OSError as exc:
            if exc.args[0] == errno.ENOBUFS:
                continue
            if exc.args[0] in (errno.EAGAIN, errno.EWOULDBLOCK):
                return got
            raise


def test_a_turn_reads_one_batch_and_the_rest_waits() -> None:
    kernel, ours = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    with kernel, ours:
        batch = Batch(ours.fileno())
        try:
            for i in range(BATCH + 5):
                kernel.send(b"packet %d" % i)
            batch.left = BATCH
            first = run_socket(batch)
            assert first == [b"packet %d" % i for i in range(BATCH)]
            batch.left = BATCH  # the next turn: what was left, then the socket is empty
            assert run_socket(batch) == [b"packet %d" % i for i in range(BATCH, BATCH + 5)]
            batch.left = BATCH
            assert run_socket(batch) == []  # never blocks
        finally:
            batch.close()
        kernel.send(b"still open")  # the batch closed its own copy of the fd only
        assert ours.recv(100) == b"still open"
