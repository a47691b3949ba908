"""The NFLOG reader (snitch/gateway/nflog.py): messages, their sequence numbers, markers."""

from __future__ import annotations

import struct

import pytest

from snitch.gateway.nflog import (
    NFULA_CFG_FLAGS,
    NFULA_MARK,
    NFULA_PAYLOAD,
    NFULA_SEQ,
    NFULNL_CFG_F_SEQ,
    NflogError,
    NflogReader,
    SeqGaps,
    bind_messages,
    parse,
)
from tests.fakes import tcp as syn

PACKET = syn("10.9.0.5", 80, sport=5)
SYNC = 0x80


def attr(kind: int, value: bytes) -> bytes:
    size = 4 + len(value)
    return struct.pack("=HH", size, kind) + value + b"\0" * ((-size) % 4)


def message(mark: int, payload: bytes = PACKET, seq: int | None = None) -> bytes:
    """One packet message as the kernel builds it (header, mark, payload, sequence)."""
    body = struct.pack("=BBH", 2, 0, 0) + attr(1, b"\x08\x00\x00\x00")
    body += attr(NFULA_MARK, struct.pack("!I", mark)) + attr(NFULA_PAYLOAD, payload)
    if seq is not None:
        body += attr(NFULA_SEQ, struct.pack("!I", seq))
    return struct.pack("=IHHII", 16 + len(body), 0x0400, 0, 0, 0) + body


def test_messages_are_read_back_with_their_sequence_mark_and_bytes() -> None:
    data = message(0x1202, seq=7) + message(0x1302)
    assert list(parse(data)) == [(7, 0x1202, PACKET), (-1, 0x1302, PACKET)]
    error = struct.pack("=IHHII", 20, 2, 0, 0, 0) + struct.pack("=i", -16)
    with pytest.raises(NflogError):
        list(parse(error))
    assert list(parse(message(1)[:-3])) == []  # cut short: nothing made up


def test_the_group_is_bound_with_sequence_numbers() -> None:
    messages = bind_messages(7, 80)
    assert [len(m) % 4 for m in messages] == [0, 0, 0]
    flags = attr(NFULA_CFG_FLAGS, struct.pack("!H", NFULNL_CFG_F_SEQ))
    assert flags in messages[2]


def test_a_gap_in_the_sequence_is_that_many_lost() -> None:
    gaps = SeqGaps()
    assert [gaps.see(s) for s in (0, 1, 2, 10, 11, 13)] == [0, 0, 0, 7, 0, 1]
    assert gaps.missed == 8
    assert gaps.see(5) == 0 and gaps.missed == 8  # behind: not a loss
    late = SeqGaps()
    assert late.see(3) == 3  # the first ones lost: numbering starts at 0
    wrap = SeqGaps()
    wrap.expected = 0xFFFFFFFE
    assert wrap.see(0xFFFFFFFE) == 0 and wrap.see(1) == 2 and wrap.expected == 2


def test_the_reader_counts_losses_hands_flows_on_and_tells_markers() -> None:
    flows: list[int] = []
    losses: list[int] = []
    markers: list[bytes] = []
    reader = NflogReader(7, lambda mark, data: flows.append(mark), 80, SYNC)
    reader.on_loss, reader.on_sync = losses.append, markers.append
    reader.take(message(0x102, seq=0) + message(0x202, seq=1))
    reader.take(message(0x302, seq=5) + message(SYNC, b"marker", seq=6))
    reader.take(message(0x402, seq=7))
    assert flows == [0x102, 0x202, 0x302, 0x402]
    assert losses == [3] and reader.missed == 3
    assert markers == [b"marker"]  # a marker is no flow


class OverflowingSocket:
    """A netlink socket whose buffer overflowed once, then holds one datagram."""

    def __init__(self, data: bytes) -> None:
        self.replies: list[bytes | OSError] = [OSError(105, "No buffer space"), data]

    def recv(self, size: int) -> bytes:
        if not self.replies:
            raise BlockingIOError
        reply = self.replies.pop(0)
        if isinstance(reply, OSError):
            raise reply
        return reply


def test_an_overflow_is_told_at_once_and_counted_by_the_next_message() -> None:
    losses: list[int] = []
    reader = NflogReader(7, lambda mark, data: None, 80, SYNC)
    reader.on_loss = losses.append
    reader._sock = OverflowingSocket(message(0x102, seq=64))  # type: ignore[assignment]
    reader.read()
    assert losses == [0, 64] and reader.overflows == 1 and reader.missed == 64
