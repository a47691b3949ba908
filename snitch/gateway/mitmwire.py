"""The messages between the gateway and its mitmproxy worker (mitmworker.py), one
dataclass per kind, and their framing: a 4-byte big-endian length, then a JSON object
whose ``kind`` is a ``Kind``.

The worker *asks* (an ``id`` it picked; the gateway answers with the same ``id``) or
*tells* (no answer). Decisions are the gateway's: the worker only reports what it saw
(a connection's first bytes, a request's head) and applies the answer. Every string in
a message is sandbox text; nothing here interprets it.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import struct
from dataclasses import dataclass, field
from typing import Any, ClassVar

from snitch.core.logentry import LogEntry
from snitch.core.model import Decision
from snitch.gateway.refusal import Refusal
from snitch.gateway.requestgate import Outcome, SeenRequest

HEADER = struct.Struct(">I")
MAX_MESSAGE = 16 * 1024 * 1024  # a request head or a log line is far smaller


class Kind(enum.StrEnum):
    START = "start"  # gateway -> worker, first: how to run mitmproxy
    READY = "ready"  # worker -> gateway: mitmproxy listens
    CONNECTION = "connection"  # ask: may this connection go on (its SNI, if any)?
    CONNECTION_ANSWER = "connection-answer"
    CLOSED = "closed"  # tell: a connection closed before it was decided
    REQUEST = "request"  # ask: judge this request head (requestgate.py)
    REQUEST_ANSWER = "request-answer"
    ADDRESS = "address"  # ask: the real address behind a synthetic one (ask mode)
    ADDRESS_ANSWER = "address-answer"
    VERIFY = "verify"  # ask: is dst really host's address (secrets)?
    VERIFY_ANSWER = "verify-answer"
    SECRET_VALUES = "secret-values"  # ask: the run's secret values (secrets.py)
    SECRET_VALUES_ANSWER = "secret-values-answer"
    LOG = "log"  # tell: a log line (http, tls, leak)


class WireError(ValueError):
    """A message that is not one of ours."""


@dataclass(frozen=True, slots=True)
class Message:
    KIND: ClassVar[Kind]

    def to_wire(self) -> dict[str, Any]:
        return {"kind": str(self.KIND), **{f.name: getattr(self, f.name)
                                           for f in dataclasses.fields(self)}}  # fmt: skip

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> Message:
        return cls(**{f.name: data[f.name] for f in dataclasses.fields(cls) if f.name in data})


@dataclass(frozen=True, slots=True)
class Start(Message):
    KIND = Kind.START
    listen_host: str
    port: int
    confdir: str
    intercept: bool
    upstream_ca: str | None = None
    # the run's placeholder secrets (SecretBinding's fields; no values: SecretValues)
    bindings: list[dict[str, Any]] = field(default_factory=list)
    # the ports on which the gateway may defer a flow to its ClientHello (FlowGate)
    tls_ports: list[int] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Ready(Message):
    KIND = Kind.READY


@dataclass(frozen=True, slots=True)
class Connection(Message):
    KIND = Kind.CONNECTION
    id: int
    src: str
    sport: int
    dst: str
    dport: int
    tls: bool  # its first bytes are a ClientHello (``sni`` its name, maybe "")
    sni: str = ""
    # not TLS: its head as read (peek.Seen's kind "http"/"other", its Host, whether it is
    # still cut short after ``size`` bytes); "" when not read
    head: str = ""
    head_host: str = ""
    head_partial: bool = False
    size: int = 0


@dataclass(frozen=True, slots=True)
class ConnectionAnswer(Message):
    KIND = Kind.CONNECTION_ANSWER
    id: int
    allow: bool
    terminate: bool = False  # TLS to a secret's bound host: mitmproxy terminates it


@dataclass(frozen=True, slots=True)
class Closed(Message):
    KIND = Kind.CLOSED
    src: str
    sport: int


@dataclass(frozen=True, slots=True)
class Request(Message):
    KIND = Kind.REQUEST
    id: int
    seen: SeenRequest

    def to_wire(self) -> dict[str, Any]:
        return {"kind": str(self.KIND), "id": self.id, "seen": dataclasses.asdict(self.seen)}

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> Message:
        return cls(data["id"], SeenRequest(**data["seen"]))


@dataclass(frozen=True, slots=True)
class RequestAnswer(Message):
    KIND = Kind.REQUEST_ANSWER
    id: int
    outcome: Outcome | None

    def to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": str(self.KIND), "id": self.id, "outcome": None}
        if self.outcome is not None:
            refusal = self.outcome.refusal
            out["outcome"] = {
                "decision": self.outcome.decision.to_dict(),
                "refusal": None if refusal is None else {
                    "status": refusal.status, "headers": [list(h) for h in refusal.headers],
                    "body": refusal.body.decode("latin-1"), "reason": refusal.reason},
            }  # fmt: skip
        return out

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> Message:
        raw = data["outcome"]
        if raw is None:
            return cls(data["id"], None)
        refused = raw["refusal"]
        refusal = None
        if refused is not None:
            headers = tuple((str(k), str(v)) for k, v in refused["headers"])
            body = str(refused["body"]).encode("latin-1")
            refusal = Refusal(int(refused["status"]), headers, body, str(refused["reason"]))
        return cls(data["id"], Outcome(Decision.from_dict(raw["decision"]), refusal))


@dataclass(frozen=True, slots=True)
class Address(Message):
    KIND = Kind.ADDRESS
    id: int
    dst: str


@dataclass(frozen=True, slots=True)
class AddressAnswer(Message):
    KIND = Kind.ADDRESS_ANSWER
    id: int
    real: str | None


@dataclass(frozen=True, slots=True)
class Verify(Message):
    KIND = Kind.VERIFY
    id: int
    host: str
    dst: str


@dataclass(frozen=True, slots=True)
class VerifyAnswer(Message):
    KIND = Kind.VERIFY_ANSWER
    id: int
    verified: bool


@dataclass(frozen=True, slots=True)
class SecretValues(Message):
    KIND = Kind.SECRET_VALUES
    id: int


@dataclass(frozen=True, slots=True)
class SecretValuesAnswer(Message):
    KIND = Kind.SECRET_VALUES_ANSWER
    id: int
    values: dict[str, str] | None  # name -> value; None: not there (yet)

    def __repr__(self) -> str:  # never the values, whoever prints it
        return f"SecretValuesAnswer(id={self.id}, values=<{len(self.values or {})} hidden>)"


@dataclass(frozen=True, slots=True)
class Log(Message):
    KIND = Kind.LOG
    entry: LogEntry  # its ``session`` and ``rule`` (the description) are the gateway's

    def to_wire(self) -> dict[str, Any]:
        return {"kind": str(self.KIND), "entry": self.entry.to_dict()}

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> Message:
        return cls(LogEntry.from_dict(data["entry"]))


MESSAGES: dict[Kind, type[Message]] = {
    cls.KIND: cls
    for cls in (
        Start,
        Ready,
        Connection,
        ConnectionAnswer,
        Closed,
        Request,
        RequestAnswer,
        Address,
        AddressAnswer,
        Verify,
        VerifyAnswer,
        SecretValues,
        SecretValuesAnswer,
        Log,
    )  # fmt: skip
}
ANSWERS = frozenset({Kind.CONNECTION_ANSWER, Kind.REQUEST_ANSWER, Kind.ADDRESS_ANSWER,
                     Kind.VERIFY_ANSWER, Kind.SECRET_VALUES_ANSWER})  # fmt: skip


def encode(message: Message) -> bytes:
    body = json.dumps(message.to_wire(), separators=(",", ":")).encode()
    return HEADER.pack(len(body)) + body


def decode(body: bytes) -> Message:
    try:
        data = json.loads(body)
        cls = MESSAGES[Kind(data["kind"])]
        return cls.from_wire(data)
    except (ValueError, KeyError, TypeError) as exc:
        raise WireError(f"not a worker message: {type(exc).__name__}") from None
