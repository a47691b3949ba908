"""Request-level decisions: each HTTP request mitmproxy sees (plain HTTP, or HTTPS it
intercepts) is judged with its method and path (docs/rules.md, *Request rules*).

- a deny rule naming the request's ``Host`` refuses it, whatever address it goes to;
- the deciding rule is a request rule (``--path``/``--method``): its verdict stands;
- no rule matches, but request rules are about this destination: ``enforce`` refuses
  (``no rule matched``), ``audit`` lets it go, ``ask`` holds the request (not its
  connection) as a Pending of kind ``request`` until a person or the deadline decides;
- anything else (a bare host rule decides, or nothing is about requests here): the
  connection's verdict stands and the request goes on.

A refused request is answered in band (refusal.py). Only names verified for the
destination address are matched against allow rules; the ``Host`` header alone may only
refuse. Waiting for a person awaits a future: the event loop goes on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from snitch.core.grammar import Origin, is_address
from snitch.core.model import Action, Decision, Mode, Proto, Query
from snitch.core.policy import is_request_rule
from snitch.gateway.refusal import (
    Refusal,
    build_refusal,
    host_named,
    how_to_allow,
    refused_by,
)

if TYPE_CHECKING:
    from snitch.gateway.names import NameTable
    from snitch.gateway.rulebook import RuleBook


class Holder(Protocol):
    """What holds a request for a person (``asker.Asker``)."""

    async def hold_request(self, seen: SeenRequest, names: tuple[str, ...]) -> Decision: ...


class Gate(Protocol):
    """What the request gate uses of the flow gate (``flowgate.FlowGate``; named by this
    interface, not imported, so the two modules do not depend on each other)."""

    names: NameTable
    rules: RuleBook

    @property
    def asker(self) -> Holder | None: ...


# flow.metadata keys: the decision on a request (logged on its http line), and the
# refusal's (secrets.py sets it too, for a placeholder sent where it is not bound)
DECISION_KEY = "coderun.decision"
DENIED_KEY = "coderun.denied"


@dataclass(frozen=True, slots=True)
class SeenRequest:
    """What the gateway saw of a request before its body (all of it sandbox text)."""

    src: str
    sport: int
    dst: str  # the address the connection goes to
    port: int
    host: str  # the Host (or, intercepted, the inner Host): claimed, not verified
    method: str
    path: str  # path and query, as sent
    url: str
    size: int = 0  # Content-Length, when given
    content_type: str = ""
    accept: str = ""


def seen_request(flow: Any) -> SeenRequest:
    """A mitmproxy flow's request as the gateway judges it."""
    req = flow.request
    dst, port = flow.server_conn.address[:2] if flow.server_conn.address else ("", req.port)
    length = req.headers.get("content-length", "")
    return SeenRequest(
        src=flow.client_conn.peername[0], sport=int(flow.client_conn.peername[1]),
        dst=str(dst), port=int(port), host=str(req.pretty_host).rstrip(".").lower(),
        method=str(req.method).upper(), path=str(req.path), url=str(req.pretty_url),
        size=int(length) if length.isdigit() else 0,
        content_type=str(req.headers.get("content-type", "")),
        accept=str(req.headers.get("accept", "")),
    )  # fmt: skip


@dataclass(frozen=True, slots=True)
class Outcome:
    """A request's decision worth a log line; ``refusal`` when it is answered 403."""

    decision: Decision
    refusal: Refusal | None = None


class RequestGate:
    def __init__(self, gate: Gate) -> None:
        self.gate = gate

    def names(self, seen: SeenRequest) -> tuple[str, ...]:
        """The names matched against rules: the Host when it is verified for the
        address (a DNS answer led there), else the address's verified names."""
        known = self.gate.names.names_for(seen.dst)
        return (seen.host,) if seen.host in known else known

    async def judge(self, seen: SeenRequest) -> Outcome | None:
        """The request's outcome; None when it goes on with nothing to log about it."""
        rules = self.gate.rules
        if seen.host and not is_address(seen.host.strip("[]")):
            named = rules.name_denied(seen.host, seen.port)
            if named is not None:
                why = host_named(seen.host, rules.rule(named.rule_id), named.rule_id)
                return self.refuse(seen, named, why)
        query = Query(Proto.TCP, seen.dst, seen.port, self.names(seen), path=seen.path,
                      method=seen.method)  # fmt: skip
        decision = rules.decide(query)
        if decision is not None:
            rule = rules.rule(decision.rule_id)
            if rule is None or not is_request_rule(rule):
                return None  # a connection rule: the connection's verdict stands
            if decision.action is Action.ALLOW:
                return Outcome(decision)
            if rules.mode is Mode.AUDIT:
                return Outcome(self._audit(decision))
            return self.refuse(seen, decision, refused_by(rule, decision.rule_id), rule.priority)
        if rules.request_rules(query) is None:
            return None  # nothing here is about requests
        if rules.mode is Mode.AUDIT:
            return Outcome(Decision(Action.ALLOW, None, "audit (enforce would deny: no rule "
                                    "matched)", Origin.AUDIT))  # fmt: skip
        asker = self.gate.asker
        if rules.mode is Mode.ASK and asker is not None:
            decided = await asker.hold_request(seen, query.names)
            if decided.action is Action.ALLOW:
                return Outcome(decided)
            rule = rules.rule(decided.rule_id)
            why = refused_by(rule, decided.rule_id) if rule is not None else decided.reason
            return self.refuse(seen, decided, why, rule.priority if rule is not None else None)
        return self.refuse(seen, Decision(Action.DENY, None, "no rule matched"),
                           refused_by(None, None))  # fmt: skip

    @staticmethod
    def _audit(decision: Decision) -> Decision:
        why = f"audit (enforce would deny: {decision.reason})"
        return Decision(Action.ALLOW, decision.rule_id, why, Origin.AUDIT)

    @staticmethod
    def refuse(
        seen: SeenRequest, decision: Decision, why: str, priority: int | None = None
    ) -> Outcome:
        """The 403 for ``seen``; the log line's reason is the header's."""
        hint = how_to_allow(seen.host, seen.dst, seen.port, seen.method, seen.path,
                            priority if decision.rule_id is not None else None)  # fmt: skip
        refusal = build_refusal(why, hint, seen.method, seen.url, seen.accept)
        denied = Decision(Action.DENY, decision.rule_id, refusal.reason, decision.origin)
        return Outcome(denied, refusal)
