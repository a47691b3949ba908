"""The proxy only where it is needed: a web connection read in passing, not relayed.

An allowed TCP flow to a web port goes through mitmproxy only when something needs the
stream: TLS interception, a rule with a URL path, or a bare address on a TLS port
(whose name must come from the ClientHello before the flow may leave: flowgate.py
defers it). Every other one is forwarded by the kernel. Its SYN is accepted with
``PEEK_MARK``, which the mangle table copies to the connection's mark; packets of such
a connection go to queue ``PEEK_QUEUE`` until one completes the request's head (a TLS
ClientHello, an HTTP request line and Host) or ``MAX_PACKETS`` went by. That packet's
verdict carries ``PEEKED_MARK``, which clears the connection's mark: the rest of the
flow never leaves the kernel.

What the head says is judged and logged as mitmproxy does (mitm.py): a deny rule that
names the SNI or the Host refuses the connection wherever it went (the packet is
refused: a TCP RST) and is logged at once; otherwise a ``tls`` line (SNI) or an ``http``
line (method, URL, Host) waits in peeklog.py for the connection's end, which adds its
status, byte counts and duration (and logs a keep-alive connection's later requests).
An HTTP head's verdict carries ``PEEK_HTTP_MARK`` too: its replies' status and its later
requests are copied to NFLOG (netfilter.py).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Protocol

from snitch.core.grammar import Topic, is_address
from snitch.core.logentry import EntryKind
from snitch.core.model import Decision, FlowKey
from snitch.gateway import peek
from snitch.gateway.asker import claimed_note
from snitch.gateway.netfilter import DENY_MARK, PEEK_HTTP_MARK, PEEKED_MARK
from snitch.gateway.packet import BadPacket, parse_flow, tcp_ack, tcp_payload, tcp_seq
from snitch.gateway.queue import QueuedPacket
from snitch.gateway.refusal import head_unread, host_named, unparsed_host

if TYPE_CHECKING:
    from snitch.gateway.events import EventBus
    from snitch.gateway.fakeip import FakeIPs
    from snitch.gateway.names import NameTable
    from snitch.gateway.peeklog import PeekLog
    from snitch.gateway.revocation import Revoker
    from snitch.gateway.rulebook import RuleBook


class Gate(Protocol):
    """What the peeker uses of the flow gate (``flowgate.FlowGate``; named by this
    interface, not imported, so the two modules do not depend on each other)."""

    names: NameTable
    rules: RuleBook
    fake: FakeIPs | None
    bus: EventBus
    session: str
    revoker: Revoker | None

    def log_flow(
        self, key: FlowKey, decision: Decision, verdict: str = "",
        names: tuple[str, ...] | None = None, shown: str | None = None,
    ) -> None: ...  # fmt: skip


MAX_PACKETS = 12  # data packets of a connection read at most for its head's name
MAX_HEAD = 16384  # bytes of a request's head gathered at most (then: as for MAX_PACKETS)
KEPT = 4096  # connections being read at once, at most (the oldest are let go)
IN_FLIGHT = 1 << 24  # sequence space after a read head whose packets are its connection's


class Peeker:
    def __init__(self, gate: Gate) -> None:
        self.gate = gate
        # Heads being read: their bytes so far, packets seen, first sequence number, and
        # the acknowledgement number their packets carry (the server says nothing before
        # the head: a packet acknowledging something else is another connection's).
        self._reading: dict[FlowKey, tuple[bytes, int, int, int]] = {}
        # Connections read: their head's sequence and acknowledgement numbers, and whether
        # it was refused. Packets queued while the head's verdict was on its way (a
        # ClientHello's second segment, a retransmission the client's TCP sent meanwhile)
        # go as the head went: on unread, or refused. They acknowledge what the head did
        # (the server has not had the head yet). A new connection on the same 5-tuple may
        # start close by in sequence space (an ISN grows with time for one 4-tuple), but
        # acknowledges another server ISN: its head is read.
        self._done: dict[FlowKey, tuple[int, int, bool]] = {}
        self.read_count = 0
        self.log: PeekLog | None = None  # lines wait for their connection's end (peeklog.py)

    def on_packet(self, pkt: QueuedPacket) -> None:
        """A packet of a connection being read; never raises (a bug lets it go as is)."""
        try:
            data = pkt.get_payload()
            key = parse_flow(data)
            payload = tcp_payload(data)
        except BadPacket:
            pkt.drop()
            return
        if not payload:
            pkt.accept()  # a bare ACK the kernel did not take (netfilter.py: IP options)
            return
        seq, ack = tcp_seq(data), tcp_ack(data)
        done = self._done.get(key)
        if done is not None and (seq - done[0]) % (1 << 32) < IN_FLIGHT and ack == done[1]:
            if done[2]:
                pkt.set_mark(PEEKED_MARK | DENY_MARK)
            pkt.accept()
            return
        head, packets, first, acked = self._reading.pop(key, (b"", 0, seq, ack))
        if acked != ack:  # a new connection on the same 5-tuple: its own head from here
            head, packets, first = b"", 0, seq
        offset = (seq - first) % (1 << 32)
        if offset > len(head):  # a gap before it: read in order (the client sends it again)
            self._reading[key] = (head, packets, first, ack)
            pkt.drop()
            return
        # In sequence order: a retransmission adds only what it has beyond the head so far.
        head = (head + payload[len(head) - offset :])[:MAX_HEAD]
        packets += 1
        seen = peek.read(head)
        if seen.partial and packets < MAX_PACKETS and len(head) < MAX_HEAD:
            if len(self._reading) >= KEPT:
                del self._reading[next(iter(self._reading))]
            self._reading[key] = (head, packets, first, ack)
            pkt.accept()  # its head goes on in the next packet
            return
        self.read_count += 1
        # The verdict first (the connection waits for it), the log line after.
        denial = None if seen.partial else self.refusal(key, seen)
        denied = seen.partial or denial is not None
        more = DENY_MARK if denied else PEEK_HTTP_MARK if seen.kind == "http" else 0
        pkt.set_mark(PEEKED_MARK | more)
        pkt.accept()
        if len(self._done) >= KEPT:
            del self._done[next(iter(self._done))]
        self._done.pop(key, None)
        self._done[key] = (first, ack, denied)
        if seen.partial:  # sent in pieces past the limits, its name still unread: refused
            self.refuse_unread(key, seen, packets, len(head))
        else:
            size = peek.head_length(head) if seen.kind == "http" else 0
            self.log_head(key, seen, (first, ack, size), denial)

    def refusal(self, key: FlowKey, seen: peek.Seen) -> Decision | None:
        """The deny rule's decision that names the head's SNI or Host (None: none does)."""
        if seen.kind == "tls":
            return self.name_denied(seen.sni, key.dport) if seen.sni else None
        host = seen.host
        if host and not is_address(host.strip("[]")):
            return self.name_denied(host, key.dport)
        return None

    def log_head(
        self, key: FlowKey, seen: peek.Seen, start: tuple[int, int, int],
        denied: Decision | None,
    ) -> None:  # fmt: skip
        """The head's line: written at once when refused, else watched to its end."""
        gate = self.gate
        if seen.kind == "tls":
            sni = seen.sni
            if denied is not None:
                verified = sni in gate.names.names_for(key.dst)
                if not verified:
                    denied = Decision(denied.action, denied.rule_id,
                                      f"{denied.reason} ({claimed_note(sni)})")  # fmt: skip
                gate.log_flow(key, denied, names=(sni,) if verified else ())
                return
            url = f"tls://{sni or self._dst(key)}:{key.dport}"
            made = self.make_line(key, [sni] if sni else [], EntryKind.TLS, sni=sni, url=url)
            self._watch(key, made, False, start)
            return
        if seen.kind == "http":
            host = seen.host
            port = "" if key.dport == 80 else f":{key.dport}"
            url = f"http://{host or self._dst(key)}{port}{seen.path}"
            if denied is not None:
                why = host_named(host, gate.rules.rule(denied.rule_id), denied.rule_id)
                gate.bus.publish(Topic.LOG, self.make_line(
                    key, [host], method=seen.method, url=url, verdict="deny",
                    rule_id=denied.rule_id, rule=gate.rules.describe(denied.rule_id),
                    reason=why))  # fmt: skip
                return
            self._watch(key, self.make_line(key, [host or self._dst(key)], method=seen.method,
                                            url=url), True, start)  # fmt: skip
            return
        if denied is not None:  # a Host in other bytes
            why = unparsed_host(seen.host, gate.rules.rule(denied.rule_id), denied.rule_id)
            gate.bus.publish(Topic.LOG, self.make_line(
                key, [seen.host], url=f"http://{seen.host}", verdict="deny",
                rule_id=denied.rule_id, rule=gate.rules.describe(denied.rule_id),
                reason=why))  # fmt: skip

    def refuse_unread(self, key: FlowKey, seen: peek.Seen, packets: int, size: int) -> bool:
        """A head still incomplete after ``MAX_PACKETS`` packets or ``MAX_HEAD`` bytes,
        without the SNI or Host it is judged by: refused (let go, a request trickled a
        byte at a time would reach its server unread)."""
        kind = EntryKind.TLS if seen.kind == "tls" else EntryKind.HTTP
        scheme = "tls" if kind is EntryKind.TLS else "http"
        self.gate.bus.publish(Topic.LOG, self.make_line(
            key, [], kind, url=f"{scheme}://{self._dst(key)}:{key.dport}", verdict="deny",
            reason=head_unread(size, packets)))  # fmt: skip
        return True

    def name_denied(self, name: str, port: int) -> Decision | None:
        return self.gate.rules.name_denied(name, port)

    def _dst(self, key: FlowKey) -> str:
        fake = self.gate.fake
        real = fake.real_address(key.dst) if fake is not None else None
        return real or key.dst

    def _watch(
        self, key: FlowKey, line: dict[str, object], http: bool, start: tuple[int, int, int]
    ) -> None:
        if self.log is not None:
            self.log.watch(key, line, http, start)
        else:  # no NFLOG: written now, without what the connection's end would add
            self.gate.bus.publish(Topic.LOG, line)

    def make_line(
        self, key: FlowKey, names: list[str], kind: EntryKind = EntryKind.HTTP, sni: str = "",
        method: str = "", url: str = "", verdict: str = "", rule_id: int | None = None,
        rule: str = "", reason: str = "",
    ) -> dict[str, object]:  # fmt: skip
        return line(kind, self.gate.session, key.src, key.sport, self._dst(key), key.dport,
                    names, sni, method, url, verdict, rule_id, rule, reason)  # fmt: skip


def line(
    kind: EntryKind, session: str, src: str, sport: int, dst: str, dport: int,
    names: list[str], sni: str, method: str, url: str, verdict: str, rule_id: int | None,
    rule: str, reason: str,
) -> dict[str, object]:  # fmt: skip
    """``LogEntry(kind, ...).to_dict()`` of a line read in passing, without the LogEntry
    (its generic ``to_dict`` was a quarter of the gateway's time under HTTP load)."""
    out: dict[str, object] = {"kind": str(kind), "time": time.time()}
    if session:
        out["session"] = session
    out["proto"], out["src"] = "tcp", src
    if sport:
        out["sport"] = sport
    out["dst"] = dst
    if dport:
        out["dport"] = dport
    if names:
        out["names"] = names
    if verdict:
        out["verdict"] = verdict
    if rule_id is not None:
        out["rule_id"] = rule_id
    for name, value in (("rule", rule), ("reason", reason), ("sni", sni), ("method", method),
                        ("url", url)):  # fmt: skip
        if value:
            out[name] = value
    return out
