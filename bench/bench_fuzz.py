"""Fuzz the gateway's parsers with 100,000+ inputs: random bytes and mutated real ones.

    python bench/bench_fuzz.py                 # 120,000 packets and 120,000 DNS messages
    python bench/bench_fuzz.py -n 5000         # fewer (a smoke run)
    python bench/bench_fuzz.py --strict        # exit 1 on any unexpected exception

Three targets, each fed the same kinds of input (a third random bytes, a third real
packets/messages with bytes flipped, cut or appended, a third built field by field):

- ``parse_flow``: may only return a flow or raise ``BadPacket``;
- ``FlowGate.on_packet`` (enforce mode, one allow rule): must never raise, must give
  every packet exactly one verdict and one log line (garbage: dropped and logged);
- ``DnsForwarder.resolve`` (a fake upstream that answers, returns garbage or times
  out): must never raise; garbage is dropped and logged, anything else answered.

Prints counts and timings; unexpected exceptions are counted by type with an example.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import random
import struct
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dnslib import QTYPE, RR, A, DNSRecord  # noqa: E402

from snitch.core.model import Action, Mode, Proto, Rule  # noqa: E402
from snitch.gateway.dns import DnsForwarder  # noqa: E402
from snitch.gateway.events import EventBus  # noqa: E402
from snitch.gateway.fakeip import FakeIPs  # noqa: E402
from snitch.gateway.flowgate import FlowGate  # noqa: E402
from snitch.gateway.names import NameTable  # noqa: E402
from snitch.gateway.packet import BadPacket, parse_flow  # noqa: E402
from snitch.gateway.rulebook import RuleBook  # noqa: E402

# -- inputs --------------------------------------------------------------------------------------


def ipv4(proto: int, payload: bytes, frag: int = 0, options: bytes = b"") -> bytes:
    ihl = 5 + len(options) // 4
    return (
        struct.pack(
            "!BBHHHBBH4s4s",
            0x40 | ihl,
            0,
            ihl * 4 + len(payload),
            1,
            frag,
            64,
            proto,
            0,
            bytes([172, 30, 0, 3]),
            bytes([192, 0, 2, 10]),
        )
        + options
        + payload
    )


def real_packets() -> list[bytes]:
    syn = struct.pack("!HHIIBBHHH", 43210, 443, 1, 0, 5 << 4, 0x02, 64240, 0, 0)
    data = struct.pack("!HHIIBBHHH", 43211, 80, 7, 9, 8 << 4, 0x18, 501, 0, 0) + b"x" * 40
    udp = struct.pack("!HHHH", 5353, 53, 37, 0) + bytes(DNSRecord.question("x.test").pack())
    icmp = struct.pack("!BBHHH", 8, 0, 0, 77, 1) + b"coderun" * 4
    return [
        ipv4(6, syn),
        ipv4(6, data),
        ipv4(17, udp),
        ipv4(1, icmp),
        ipv4(17, udp[:8], frag=0x2000),
        ipv4(17, b"tail", frag=185),
        ipv4(6, syn, options=b"\x83\x07\x04" + bytes(4) + b"\x00"),
        ipv4(136, b"\x30\x39\x00\x07\x00\x08\x00\x00"),
    ]


def real_queries() -> list[bytes]:
    out = [
        bytes(DNSRecord.question(n, t).pack())
        for n, t in (
            ("api.example.test", "A"),
            ("x.example.test", "AAAA"),
            ("a.b.c.example.test", "TXT"),
            ("example.test", "MX"),
            ("denied.test", "A"),
        )
    ]
    two = DNSRecord.question("api.example.test")
    two.add_question(*DNSRecord.question("second.example.test").questions)
    out.append(bytes(two.pack()))
    return out


def mutate(rng: random.Random, data: bytes) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randrange(1, 9)):
        op = rng.randrange(4)
        if op == 0 and buf:
            buf[rng.randrange(len(buf))] = rng.randrange(256)
        elif op == 1 and buf:
            del buf[rng.randrange(len(buf)) :]
        elif op == 2:
            buf += rng.randbytes(rng.randrange(1, 64))
        elif buf:
            buf[rng.randrange(len(buf))] ^= 1 << rng.randrange(8)
    return bytes(buf)


def built_packet(rng: random.Random) -> bytes:
    head = struct.pack(
        "!BBHHHBBH4s4s",
        rng.choice([0x45, 0x46, 0x4F, 0x44, 0x40, 0x65]),
        0,
        rng.randrange(65536),
        0,
        rng.randrange(65536),
        64,
        rng.choice([1, 6, 17, 58, 132, 136, 0, 255]),
        0,
        rng.randbytes(4),
        rng.randbytes(4),
    )
    return head + rng.randbytes(rng.randrange(0, 80))


LABELS = [
    b"api",
    b"example",
    b"test",
    b"denied",
    b"",
    b"a" * 63,
    b"a" * 63,
    b"\xc3\xa9",
    b"a.b",
    b"\x00",
]


def built_query(rng: random.Random) -> bytes:
    body = b""
    qd = rng.randrange(4)
    for _ in range(qd):
        if rng.random() < 0.05:  # over 255 bytes in all (each label valid)
            labels = [rng.choice([b"a", b"b", b"z"]) * 63 for _ in range(rng.randrange(4, 7))]
        else:
            labels = [
                rng.choice(LABELS) if rng.random() < 0.6 else rng.randbytes(rng.randrange(1, 64))
                for _ in range(rng.randrange(0, 9))
            ]
        body += b"".join(bytes([len(x)]) + x for x in labels if x) + b"\0"
        body += struct.pack("!HH", rng.choice([1, 5, 16, 28, 255, 0, 65535]), rng.choice([1, 255]))
    head = struct.pack(
        "!HHHHHH",
        rng.randrange(65536),
        rng.randrange(65536),
        qd,
        rng.randrange(3),
        rng.randrange(3),
        rng.randrange(3),
    )
    return head + body + rng.randbytes(rng.randrange(0, 40))


def inputs(
    rng: random.Random, n: int, corpus: list[bytes], built: Callable[[random.Random], bytes]
) -> list[bytes]:
    out = []
    for i in range(n):
        kind = i % 3
        if kind == 0:
            out.append(rng.randbytes(rng.randrange(0, 300)))
        elif kind == 1:
            out.append(mutate(rng, rng.choice(corpus)))
        else:
            out.append(built(rng))
    return out


# -- targets --------------------------------------------------------------------------------------


class Counts:
    def __init__(self) -> None:
        self.c: collections.Counter[str] = collections.Counter()
        self.unexpected: dict[str, tuple[int, bytes, str]] = {}

    def crash(self, exc: BaseException, data: bytes) -> None:
        name = type(exc).__name__
        self.c["unexpected"] += 1
        n, example, tb = self.unexpected.get(name, (0, data, traceback.format_exc(limit=3)))
        self.unexpected[name] = (n + 1, example, tb)


class FakePacket:
    def __init__(self, payload: bytes) -> None:
        self.payload, self.verdicts, self.mark = payload, 0, 0

    def get_payload(self) -> bytes:
        return self.payload

    def accept(self) -> None:
        self.verdicts += 1

    def drop(self) -> None:
        self.verdicts += 1

    def set_mark(self, mark: int) -> None:
        self.mark = mark

    def retain(self) -> None:
        pass


def fuzz_parse_flow(data: list[bytes]) -> Counts:
    counts = Counts()
    for d in data:
        try:
            parse_flow(d)
            counts.c["flow"] += 1
        except BadPacket:
            counts.c["BadPacket"] += 1
        except Exception as exc:
            counts.crash(exc, d)
    return counts


def fuzz_flow_gate(data: list[bytes]) -> Counts:
    counts = Counts()
    bus = EventBus()
    logged: list[dict[str, Any]] = []
    bus.subscribe(lambda topic, payload: logged.append(payload) if topic == "log" else None)
    rules = RuleBook(
        None,
        [Rule(Action.ALLOW, cidr="192.0.2.10", port_lo=443, port_hi=443, proto=Proto.TCP)],
        Mode.ENFORCE,
        "bench",
    )
    gate = FlowGate(rules, NameTable(), bus, "bench")
    for d in data:
        pkt = FakePacket(d)
        logged.clear()
        try:
            gate.on_packet(pkt)
        except Exception as exc:
            counts.crash(exc, d)
            continue
        if pkt.verdicts != 1 or len(logged) != 1:
            counts.c["wrong verdict or log count"] += 1
        elif logged[0]["kind"] == "event":
            counts.c["dropped and logged"] += 1
        else:
            counts.c[f"flow {logged[0]['verdict']}"] += 1
    return counts


async def upstream(data: bytes, tcp: bool) -> bytes:
    mode = data[-1] % 3 if data else 0
    if mode == 0:
        raise TimeoutError("upstream timed out")
    if mode == 1:
        return b"\x12\x34" + data[2:5]
    request = DNSRecord.parse(data)
    reply = request.reply()
    reply.add_answer(RR(request.q.qname, QTYPE.A, rdata=A("192.0.2.10"), ttl=30))
    return bytes(reply.pack())


def fuzz_dns(data: list[bytes]) -> Counts:
    counts = Counts()

    async def run() -> None:
        forwarders = []
        logged: list[dict[str, Any]] = []
        bus = EventBus()
        bus.subscribe(lambda topic, payload: logged.append(payload) if topic == "log" else None)
        for mode in (Mode.ENFORCE, Mode.AUDIT, Mode.ASK):
            rules = RuleBook(
                None,
                [
                    Rule(Action.ALLOW, host="api.example.test"),
                    Rule(Action.DENY, host="denied.test", proto=Proto.DNS),
                ],
                mode,
                "bench",
            )
            names = NameTable()
            forwarder = DnsForwarder(rules, names, bus, "127.0.0.1", "bench")
            forwarder.forward = upstream  # type: ignore[method-assign]
            if mode is Mode.ASK:
                forwarder.fake = FakeIPs(names, forwarder.lookup)
            forwarders.append(forwarder)
        for i, d in enumerate(data):  # every kind of input meets every mode
            logged.clear()
            try:
                out = await forwarders[(i // 3) % 3].resolve(d, "172.30.0.3")
            except Exception as exc:
                counts.crash(exc, d)
                continue
            if len(logged) != 1:
                counts.c["wrong log count"] += 1
            elif out is None:
                counts.c["dropped and logged"] += 1
            else:
                counts.c[f"answered ({logged[0].get('verdict')})"] += 1

    asyncio.run(run())
    return counts


def report(name: str, n: int, seconds: float, counts: Counts) -> None:
    print(f"{name}: {n:,} inputs in {seconds:.2f} s ({n / seconds:,.0f}/s)")
    for key, value in sorted(counts.c.items()):
        print(f"    {key:28} {value:>9,}")
    for exc, (count, example, tb) in counts.unexpected.items():
        print(f"    UNEXPECTED {exc} x{count}, e.g. input {example[:80].hex()}")
        print("      " + tb.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", type=int, default=120_000, help="inputs per target")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--strict", action="store_true", help="exit 1 on unexpected exceptions")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    packets = inputs(rng, args.n, real_packets(), built_packet)
    queries = inputs(rng, args.n, real_queries(), built_query)
    total_unexpected = 0
    for name, fn, data in (
        ("parse_flow", fuzz_parse_flow, packets),
        ("FlowGate.on_packet", fuzz_flow_gate, packets),
        ("DnsForwarder.resolve", fuzz_dns, queries),
    ):
        start = time.perf_counter()
        counts = fn(data)
        report(name, len(data), time.perf_counter() - start, counts)
        total_unexpected += counts.c["unexpected"]
    print(f"total: {3 * args.n:,} inputs, {total_unexpected} unexpected exceptions")
    if args.strict and total_unexpected:
        sys.exit(1)


if __name__ == "__main__":
    main()
