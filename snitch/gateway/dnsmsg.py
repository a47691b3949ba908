"""DNS messages as the forwarder judges, sends and returns them (no I/O here).

What goes upstream is rebuilt from the one question that was judged: its name in lower
case (labels of ``[a-z0-9_-]`` only, so the name on the wire is the name the rules saw),
a type from ``ALLOWED_QTYPES``, class IN, recursion desired and a fresh random id, and
nothing else. What comes back is checked against what was sent (id, question), and the
sandbox gets only the records on the CNAME chain that starts at its question:
``qname -> CNAME -> ... -> records of the asked type``. Authority and additional
records, and answers for other names, are dropped: they are neither learnt nor passed on.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from dnslib import CLASS, OPCODE, QTYPE, RCODE, RR, DNSHeader, DNSLabel, DNSQuestion, DNSRecord

# The query types the sandbox may ask for (docs/rules.md); anything else is REFUSED.
ALLOWED_QTYPE_NAMES = (
    "A", "AAAA", "CNAME", "HTTPS", "SVCB", "MX", "TXT", "SRV", "PTR", "NS", "SOA", "CAA",
)  # fmt: skip
ALLOWED_QTYPES = frozenset(int(getattr(QTYPE, name)) for name in ALLOWED_QTYPE_NAMES)
ADDRESS_TYPES = frozenset({int(QTYPE.A), int(QTYPE.AAAA)})
LOGGED_TYPES = ADDRESS_TYPES | {int(QTYPE.CNAME)}  # answers the log lists
LABEL_BYTES = frozenset(b"abcdefghijklmnopqrstuvwxyz0123456789-_")
MAX_CHAIN = 16  # CNAMEs followed in one answer


class Refused(ValueError):
    """A query the gateway answers itself with ``rcode`` (and never forwards)."""

    def __init__(self, rcode: int, why: str) -> None:
        super().__init__(why)
        self.rcode = rcode


@dataclass(frozen=True, slots=True)
class Question:
    """The judged question: lower-case labels and a type from the list."""

    labels: tuple[bytes, ...]
    qtype: int

    @property
    def name(self) -> str:
        """The name as the rules see it (``api.example.test``; ``""`` for the root)."""
        return b".".join(self.labels).decode("ascii")

    @property
    def type_name(self) -> str:
        return type_name(self.qtype)


def type_name(qtype: int) -> str:
    """``A``, ``AAAA``...; the number as text for a type dnslib does not know."""
    return str(QTYPE.get(qtype))


def judge_question(request: Any) -> Question:
    """The one question of a plain query, or ``Refused``.

    FORMERR: not exactly one question, answer/authority records, additional records
    other than EDNS's OPT, a response, or a label outside ``[A-Za-z0-9_-]`` (a dot in a
    label would make the judged name differ from the one on the wire). NOTIMP: an opcode
    other than QUERY. REFUSED: a class other than IN, a type not on the list.
    """
    header = request.header
    if header.qr:
        raise Refused(RCODE.FORMERR, "a response, not a query")
    if header.opcode != OPCODE.QUERY:
        raise Refused(RCODE.NOTIMP, f"opcode {header.opcode} is not a query")
    if len(request.questions) != 1 or request.rr or request.auth:
        raise Refused(RCODE.FORMERR, "not a query with exactly one question")
    if any(rr.rtype != QTYPE.OPT for rr in request.ar):
        raise Refused(RCODE.FORMERR, "unexpected additional records")
    q = request.q
    labels = tuple(bytes(label).lower() for label in q.qname.label)
    for label in labels:
        if b"." in label:
            raise Refused(RCODE.FORMERR, "a label holds a dot")
        if not label or not LABEL_BYTES.issuperset(label):
            raise Refused(RCODE.FORMERR, "a label holds characters outside [A-Za-z0-9_-]")
    if q.qclass != CLASS.IN:
        raise Refused(RCODE.REFUSED, f"class {q.qclass} is not IN")
    if q.qtype not in ALLOWED_QTYPES:
        raise Refused(RCODE.REFUSED, f"query type {type_name(q.qtype)} is not on the list")
    return Question(labels, int(q.qtype))


def name_question(name: str, qtype: int = int(QTYPE.A)) -> Question:
    """A question for a name the gateway looks up itself (ValueError when malformed)."""
    name = name[:-1] if name.endswith(".") else name
    labels = tuple(label.encode("ascii", "replace").lower() for label in name.split("."))
    if not all(label and LABEL_BYTES.issuperset(label) for label in labels):  # ("" too)
        raise ValueError(f"not a name the gateway looks up: {name!r}")
    return Question(labels, qtype)


def upstream_query(question: Question) -> DNSRecord:
    """The query sent upstream: the judged question alone, with a fresh random id."""
    header = DNSHeader(id=secrets.randbelow(0x10000), rd=1)
    return DNSRecord(header, q=DNSQuestion(DNSLabel(list(question.labels)), question.qtype))


def check_reply(sent: DNSRecord, reply: Any) -> None:
    """ValueError unless ``reply`` answers ``sent`` (same id, the same one question)."""
    if reply.header.id != sent.header.id:
        raise ValueError("the upstream reply has another id")
    if not reply.header.qr or reply.header.opcode != OPCODE.QUERY:
        raise ValueError("the upstream reply is not a query response")
    if len(reply.questions) != 1:
        raise ValueError("the upstream reply does not repeat the one question")
    q, asked = reply.q, sent.q
    if q.qname != asked.qname or q.qtype != asked.qtype or q.qclass != asked.qclass:
        raise ValueError("the upstream reply answers another question")


def answer_chain(reply: Any, question: Question) -> list[RR]:
    """The answer records on the chain from the question: CNAMEs, then records of the
    asked type for the chain's last name. Everything else in the reply is left out."""
    name = DNSLabel(list(question.labels))
    seen = [name]
    chain: list[RR] = []
    for _ in range(MAX_CHAIN):
        here = [rr for rr in reply.rr if rr.rclass == CLASS.IN and rr.rname == name]
        cname = next((rr for rr in here if rr.rtype == QTYPE.CNAME), None)
        if cname is None or question.qtype == QTYPE.CNAME:
            chain.extend(rr for rr in here if rr.rtype == question.qtype)
            break
        chain.append(cname)
        name = cname.rdata.label
        if name in seen:
            break  # a loop
        seen.append(name)
    return chain


def client_reply(request: Any, upstream: Any, records: list[RR]) -> DNSRecord:
    """The reply the sandbox gets: its own id and question, the upstream's status and
    ``records`` only."""
    h = upstream.header
    header = DNSHeader(
        id=request.header.id, qr=1, aa=h.aa, tc=h.tc, rd=request.header.rd, ra=h.ra, rcode=h.rcode
    )
    return DNSRecord(header, q=request.q, rr=records)


def record_text(rr: RR) -> str:
    """An answer as the log shows it: an address, or ``CNAME target``."""
    if rr.rtype in ADDRESS_TYPES:
        return str(rr.rdata)
    return f"{type_name(rr.rtype)} {str(rr.rdata).rstrip('.')}"
