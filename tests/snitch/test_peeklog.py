"""Lines of web flows read in passing, completed when their connection ends
(snitch/gateway/peeklog.py): bytes from sequence numbers, the status from the first
reply, keep-alive requests, deadlines; and conntrack's counters over netlink
(snitch/gateway/ctcounters.py), built and parsed with ``struct``."""

from __future__ import annotations

import socket
import struct
import time
from pathlib import Path
from typing import Any

import pytest

from snitch.core.logentry import EntryKind
from snitch.core.model import Action, FlowKey, Mode, Proto, Rule
from snitch.gateway import ctcounters, peeklog
from snitch.gateway.ctcounters import Counters
from snitch.gateway.events import EventBus
from snitch.gateway.flowgate import FlowGate
from snitch.gateway.names import NameTable
from snitch.gateway.peeker import Peeker
from snitch.gateway.peeklog import CUT_MESSAGE, PeekLog
from snitch.gateway.revocation import Revoker
from snitch.gateway.rulebook import RuleBook
from tests.fakes import SANDBOX, segment

SERVER = "203.0.113.5"
FIN, RST, ACK = 0x01, 0x04, 0x10
OUT, IN = 1_000, 4_294_967_000  # where the head began: the server's side wraps around


class Counted:
    """Stands in for CtCounters: answers at once, records deletions."""

    def __init__(self, found: Counters | None = None) -> None:
        self.found = found
        self.deleted: list[FlowKey] = []
        self.closed = False

    def ask(self, key: FlowKey, answer: Any) -> None:
        answer(self.found)

    def delete(self, key: FlowKey) -> bool:
        self.deleted.append(key)
        return True

    def close(self) -> None:
        self.closed = True


class Table:
    def delete(self, key: FlowKey) -> bool:
        return True

    def flows(self) -> set[FlowKey]:
        return set()


def setup(
    tmp_path: Path, counted: Counted | None = None, rules: list[Rule] | None = None
) -> tuple[PeekLog, Counted, list[dict[str, Any]], FlowGate]:
    bus = EventBus()
    logged: list[dict[str, Any]] = []
    bus.subscribe(lambda topic, data: logged.append(data) if topic == "log" else None)
    rules = rules or [Rule(Action.ALLOW, cidr="203.0.113.0/24")]
    gate = FlowGate(RuleBook(tmp_path / "rules.db", rules, Mode.ENFORCE, "s1"), NameTable(),
                    bus, "s1")  # fmt: skip
    gate.revoker = Revoker(gate.rules, Table(), gate.log_flow)
    gate.web_ports = frozenset({80, 443})
    peeker = Peeker(gate)
    counted = counted or Counted()
    log = PeekLog(gate, counted, peeker.make_line)  # type: ignore[arg-type]
    return log, counted, logged, gate


def key(sport: int = 40000, dport: int = 80) -> FlowKey:
    return FlowKey(Proto.TCP, SANDBOX, sport, SERVER, dport)


def up(payload: bytes = b"", flags: int = ACK, seq: int = OUT, ack: int = IN,
       sport: int = 40000, dport: int = 80) -> bytes:  # fmt: skip
    return segment(SANDBOX, sport, SERVER, dport, payload, flags, seq % (1 << 32), ack % (1 << 32))


def down(payload: bytes = b"", flags: int = ACK, seq: int = IN, ack: int = OUT,
         sport: int = 40000, dport: int = 80) -> bytes:  # fmt: skip
    return segment(SERVER, dport, SANDBOX, sport, payload, flags, seq % (1 << 32), ack % (1 << 32))


def first_line(log: PeekLog, url: str = "http://api.example.test/one", sport: int = 40000,
               dport: int = 80, http: bool = True, head: int = 0) -> dict[str, object]:  # fmt: skip
    line = log.make_line(key(sport, dport), ["api.example.test"], method="GET", url=url)
    log.watch(key(sport, dport), line, http, (OUT, IN, head))
    return line


def test_a_tls_connection_is_logged_at_its_end_with_its_bytes(tmp_path: Path) -> None:
    log, _, logged, _ = setup(tmp_path)
    line = log.make_line(key(dport=443), ["api.example.test"], EntryKind.TLS,
                         sni="api.example.test", url="tls://api.example.test:443")  # fmt: skip
    log.watch(key(dport=443), line, False, (OUT, IN, 0))
    log.on_packet(0, down(b"\x17\x03\x03" + b"x" * 500, seq=IN, dport=443))  # not copied, but
    assert logged == []  # ... harmless: nothing is written before the end
    log.on_packet(0, up(flags=FIN | ACK, seq=OUT + 1787, ack=IN + 3208, dport=443))
    assert logged == []  # one side's FIN: the other's is awaited
    log.on_packet(0, down(flags=FIN | ACK, seq=IN + 3208, ack=OUT + 1788, dport=443))
    [written] = logged
    assert (written["kind"], written["bytes_out"], written["bytes_in"]) == ("tls", 1787, 3208)
    assert isinstance(written["duration_ms"], float) and written["duration_ms"] >= 0
    assert "status" not in written


def test_keep_alive_requests_are_logged_each_with_status_and_bytes(tmp_path: Path) -> None:
    log, _, logged, _ = setup(tmp_path)
    first_line(log, head=83)
    reply = b"HTTP/1.1 200 OK\r\nContent-Length: 79\r\n\r\n"  # 39 bytes of head
    log.on_packet(0, down(reply + b"x" * 40, seq=IN))
    second = b"GET /bytes/9?x=1 HTTP/1.1\r\nHost: API.example.test\r\n\r\n"
    log.on_packet(0, up(second, seq=OUT + 83, ack=IN + 39 + 79))
    [one] = logged  # the request before is written when the next one starts
    # Bodies, as mitmproxy counts: the first request's head (the peeker said 83 bytes
    # long: all of it) and the response's are not counted.
    assert (one["url"], one["status"], one["bytes_out"], one["bytes_in"]) == (
        "http://api.example.test/one", 200, 0, 79)  # fmt: skip
    log.on_packet(0, down(b"HTTP/1.1 404 Not Found\r\n\r\n", seq=IN + 118))  # 26 of head
    body = 10  # the request's body, in a packet of its own (not copied)
    log.on_packet(0, down(flags=FIN | ACK, seq=IN + 118 + 500, ack=OUT + 83 + len(second)))
    log.on_packet(0, up(flags=FIN | ACK, seq=OUT + 83 + len(second) + body, ack=IN + 619))
    [_, two] = logged
    assert (two["kind"], two["method"], two["url"], two["names"], two["status"]) == (
        "http",
        "GET",
        "http://api.example.test/bytes/9?x=1",
        ["api.example.test"],
        404,
    )
    assert (two["bytes_out"], two["bytes_in"]) == (body, 500 - 26)
    assert log.requests == 1


def test_a_later_request_a_deny_rule_names_is_logged_and_its_connection_cut(
    tmp_path: Path,
) -> None:  # fmt: skip
    rules = [Rule(Action.ALLOW, cidr="203.0.113.0/24"), Rule(Action.DENY, host="evil.example.test")]
    log, counted, logged, gate = setup(tmp_path, rules=rules)
    first_line(log)
    log.on_packet(0, up(b"GET /x HTTP/1.1\r\nHost: evil.example.test\r\n\r\n", seq=OUT + 80,
                        ack=IN + 300))  # fmt: skip
    one, denied = logged
    assert one["url"] == "http://api.example.test/one" and "verdict" not in one
    assert (one["bytes_out"], one["bytes_in"]) == (80, 300)  # ended where the next began
    assert (denied["verdict"], denied["url"], denied["message"]) == (
        "deny", "http://evil.example.test/x", CUT_MESSAGE)  # fmt: skip
    assert str(denied["reason"]).startswith("Host evil.example.test named by")
    assert counted.deleted == [key()] and gate.revoker is not None and key() in gate.revoker.cut
    log.on_packet(0, up(flags=FIN | ACK, seq=OUT + 200))  # forgotten: nothing more
    assert len(logged) == 2 and log.cut == 1


def test_a_reset_ends_at_once_and_a_half_close_after_a_while(tmp_path: Path) -> None:
    log, _, logged, _ = setup(tmp_path)
    first_line(log, sport=1)
    first_line(log, sport=2)
    log.on_packet(0, down(flags=RST, seq=IN + 10, sport=1))
    assert [line["sport"] for line in logged] == [1]
    assert logged[0]["bytes_in"] == 10
    log.on_packet(0, down(flags=FIN | ACK, seq=IN + 20, ack=OUT + 5, sport=2))
    log.sweep()
    assert len(logged) == 1  # the sandbox's FIN may still come
    log._watched[(SANDBOX, 2)].ending = time.monotonic() - 1
    log.sweep()
    assert [line["sport"] for line in logged] == [1, 2]
    assert (logged[1]["bytes_out"], logged[1]["bytes_in"]) == (5, 20)


def test_no_line_waits_forever(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log, _, logged, _ = setup(tmp_path, Counted(Counters(10, 400 + 1000, 20, 800 + 50_000)))
    first_line(log)
    log.sweep()
    assert logged == []
    monkeypatch.setattr(peeklog, "LINGER_SECONDS", 0.0)
    log.sweep()
    [line] = logged  # what is known so far: conntrack's counters, less the headers
    assert (line["bytes_out"], line["bytes_in"]) == (1000, 50_000)
    assert "still open after" in str(line["message"])
    log.on_packet(0, down(b"HTTP/1.1 200 OK\r\n\r\n"))  # still watched, nothing to add
    assert len(logged) == 1


async def test_the_stop_writes_every_waiting_line(tmp_path: Path) -> None:
    log, counted, logged, _ = setup(tmp_path)
    first_line(log, sport=1)
    first_line(log, sport=2)
    log.on_packet(0, up(flags=FIN | ACK, seq=OUT + 7, ack=IN + 9, sport=2))
    await log.settle()
    assert sorted(line["sport"] for line in logged) == [1, 2]  # type: ignore[type-var]
    ended = next(line for line in logged if line["sport"] == 2)
    assert (ended["bytes_out"], ended["bytes_in"]) == (7, 9)
    assert counted.closed


def test_what_the_copies_say_is_read_with_bounds(tmp_path: Path) -> None:
    log, _, logged, _ = setup(tmp_path)
    first_line(log)
    for junk in (b"", b"\x00" * 10, b"\x45" + b"\x00" * 30):
        log.on_packet(0, junk)
    log.on_packet(0, down(b"HTTP/1.1 2x0 OK\r\n\r\n"))  # no status
    log.on_packet(0, up(b"POST /upload HTTP/1.1 GET / HTTP/1.1\r\n"))  # not a request line
    log.on_packet(0, down(b"GET / HTTP/1.1\r\n\r\n", sport=40001))  # a server's: not adopted
    log.on_packet(0, up(flags=RST, seq=OUT + 3_000_000_000))  # an absurd span: no bytes
    [line] = logged
    assert "status" not in line and line["bytes_out"] == 0 and log.requests == 0


def test_a_reused_port_ends_the_connection_before(tmp_path: Path) -> None:
    log, _, logged, _ = setup(tmp_path)
    first_line(log, url="http://api.example.test/old")
    first_line(log, url="http://api.example.test/new")
    assert [line["url"] for line in logged] == ["http://api.example.test/old"]


def _nla(kind: int, payload: bytes) -> bytes:
    size = 4 + len(payload)
    return struct.pack("=HH", size, kind) + payload + b"\0" * ((-size) % 4)


def _nested(kind: int, *parts: bytes) -> bytes:
    return _nla(kind | ctcounters.NLA_F_NESTED, b"".join(parts))


def test_a_conntrack_get_names_the_original_tuple() -> None:
    message = ctcounters.get_message(key(40000, 443), 7)
    size, kind, flags, seq, _ = struct.unpack_from("=IHHII", message)
    assert (size, kind, flags, seq) == (len(message), 0x101, 1, 7)
    assert message[16] == socket.AF_INET
    [(orig, tuple_)] = list(ctcounters.attrs(message, 20))
    assert orig == ctcounters.CTA_TUPLE_ORIG
    parts = dict(ctcounters.attrs(tuple_))
    ips = dict(ctcounters.attrs(parts[ctcounters.CTA_TUPLE_IP]))
    proto = dict(ctcounters.attrs(parts[ctcounters.CTA_TUPLE_PROTO]))
    assert (socket.inet_ntoa(ips[1]), socket.inet_ntoa(ips[2])) == (SANDBOX, SERVER)
    assert (proto[1], proto[2], proto[3]) == (b"\x06", b"\x9c\x40", b"\x01\xbb")
    delete = ctcounters.get_message(key(), 8, ctcounters.IPCTNL_MSG_CT_DELETE)
    assert struct.unpack_from("=H", delete, 4)[0] == 0x102
    with pytest.raises(ValueError):
        ctcounters.get_message(FlowKey(Proto.ICMP, SANDBOX, 1, SERVER, 8), 9)


def test_conntrack_answers_are_parsed_into_counters() -> None:
    def counts(kind: int, packets: int, count: int) -> bytes:
        return _nested(kind, _nla(1, struct.pack("!Q", packets)), _nla(2, struct.pack("!Q", count)))

    entry = (_nested(1, _nested(1, _nla(1, b"\x0a\0\0\x02")))  # a tuple: skipped
             + _nla(8, struct.pack("!I", 0x100))  # the mark: skipped
             + counts(9, 10, 1400) + counts(10, 80, 103_200))  # fmt: skip
    body = struct.pack("=BBH", socket.AF_INET, 0, 0) + entry
    new = struct.pack("=IHHII", 16 + len(body), 0x100, 0, 41, 0) + body
    error = struct.pack("=IHHII", 36, 2, 0, 42, 0) + struct.pack("=i", -2) + b"\0" * 16
    got = list(ctcounters.answers(new + error + b"\x01\x02"))  # a torn tail is ignored
    assert got == [(41, Counters(10, 1400, 80, 103_200)), (42, None)]
    assert got[0][1] is not None and got[0][1].payload() == (1000, 100_000)
    assert ctcounters.counters_of(_nla(8, b"\0\0\0\0")) is None  # accounting was off
    assert Counters(5, 500, 6, 600) - Counters(1, 100, 2, 200) == Counters(4, 400, 4, 400)


def test_a_request_on_a_connection_let_go_is_watched_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log, _, logged, _ = setup(tmp_path)
    monkeypatch.setattr(peeklog, "KEPT", 1)
    first_line(log, sport=1)
    first_line(log, sport=2)  # the first is let go (written as it is)
    assert [line["sport"] for line in logged] == [1]
    log.on_packet(0, up(b"GET /again HTTP/1.1\r\nHost: api.example.test\r\n\r\n", sport=1))
    log.on_packet(0, down(b"HTTP/1.1 204 No Content\r\n\r\n", sport=1))
    log.on_packet(0, up(flags=RST, seq=OUT + 50, sport=1))
    again = logged[-1]
    assert (again["sport"], again["url"], again["status"]) == (
        1,
        "http://api.example.test/again",
        204,
    )
    log.on_packet(0, down(b"HTTP/1.1 200 OK\r\n\r\n", sport=9))  # a reply: nothing to adopt
    assert len(logged) == 3
