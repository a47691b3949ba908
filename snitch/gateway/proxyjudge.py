"""The gateway's decisions on connections that reach its mitmproxy worker (mitm.py),
at their first bytes: in the gateway process, with the flow gate's rules, names, held
flows and asker; the worker only reports what it saw (mitmserve.py).

- a *deferred* flow (a bare address on a TLS port, no name known) is decided by the
  ClientHello's SNI, held in ask mode; a TLS connection whose SNI a deny rule names is
  refused whatever address it went to;
- an SNI never vouches for an address it does not lead to: the name counts only when
  the name table already maps the address to it (a real DNS answer), or when the name
  may be looked up and its answer holds the address. Otherwise the flow is judged (and
  held, and logged) by its address, the name shown only as *claimed, unverified*; a
  name nobody allowed is never looked up to check it (that would leak it);
- a head mitmproxy would relay unread (still cut short at the limit, or bytes that are no
  request line but carry a Host a deny rule names, or any Host while request rules are
  in force) is refused and logged (the worker reads it with peek.py);
- a deferred connection that closed before saying who it wants is logged as denied.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING

from snitch.core.logentry import EntryKind, LogEntry
from snitch.core.model import Action, Decision, FlowKey, Proto, Query
from snitch.core.settings import SecretBinding
from snitch.gateway import peek
from snitch.gateway.asker import claimed_note
from snitch.gateway.netfilter import DENY_MARK
from snitch.gateway.refusal import head_unread, unparsed_host
from snitch.gateway.secrets import bound_to

if TYPE_CHECKING:
    from snitch.gateway.flowgate import FlowGate


class FutureVerdict:
    """Stands in for a queued packet when a *connection* is held (at its ClientHello):
    the verdict resolves a future instead of reaching the kernel."""

    def __init__(self, future: asyncio.Future[bool]) -> None:
        self.future = future
        self.denied = False

    def get_payload(self) -> bytes:
        return b""

    def retain(self) -> None:
        pass

    def set_mark(self, mark: int) -> None:
        # Only the deny mark says no: an allowed web flow may be marked to be read in
        # passing (PEEK_MARK), which means nothing to a connection already in mitmproxy.
        self.denied = bool(mark & DENY_MARK)

    def accept(self) -> None:
        if not self.future.done():
            self.future.set_result(not self.denied)

    def drop(self) -> None:
        if not self.future.done():
            self.future.set_result(False)


class ProxyJudge:
    def __init__(self, gate: FlowGate, bindings: Sequence[SecretBinding] = ()) -> None:
        self.gate = gate
        self.bindings = tuple(bindings)  # TLS to their bound hosts is terminated

    async def connection(self, key: FlowKey, sni: str) -> bool:
        """True to let the connection go on (``sni`` empty: not TLS, or none sent)."""
        gate = self.gate
        verified = bool(sni) and sni in gate.names.names_for(key.dst)
        denied = gate.rules.name_denied(sni, key.dport) if sni else None
        if denied is not None:  # a deny rule names the SNI: refused wherever it went
            gate.deferred.pop(key, None)
            if not verified:
                denied = dataclasses.replace(
                    denied, reason=f"{denied.reason} ({claimed_note(sni)})"
                )
            gate.log_flow(key, denied, names=(sni,) if verified else ())
            return False
        if gate.deferred.pop(key, None) is None:
            return True  # allowed at its SYN, by its address or its names
        names = gate.names.names_for(key.dst)
        claimed = ""
        if sni and (verified or await self._name_leads_here(sni, key.dst)):
            names = (sni,)
        elif sni:
            claimed = sni  # judged by its address; the name is shown as unverified
        exe = await gate.exe_of(key)
        decision = gate.judge(Query(Proto.TCP, key.dst, key.dport, names, exe=exe))
        if decision is None:  # ask mode, no rule: a person decides
            future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
            gate.hold(FutureVerdict(future), key, names, claimed)
            return await future
        if claimed:
            decision = dataclasses.replace(
                decision, reason=f"{decision.reason} ({claimed_note(claimed)})"
            )
        if gate.revoker is not None:
            gate.revoker.note(key, decision, names)
        gate.log_flow(key, decision, names=names)
        return decision.action is Action.ALLOW

    async def _name_leads_here(self, sni: str, dst: str) -> bool:
        """Whether ``sni`` resolves to ``dst``, looked up only if the name may be looked
        up at all (else the lookup itself would carry the name out)."""
        lookup = self.gate.rules.peek(Query(Proto.DNS, None, 53, (sni,)))
        if lookup is None or lookup.action is not Action.ALLOW or self.gate.resolve is None:
            return False
        try:
            return dst in await self.gate.resolve(sni)
        except Exception:
            return False

    def unreadable(self, key: FlowKey, seen: peek.Seen, size: int) -> bool:
        """Refuse (and log) what mitmproxy would relay unread: a head still incomplete
        after ``MAX_HEAD`` bytes, or bytes that are no request line this gateway reads
        but carry a Host header a deny rule names, or any Host while request rules are
        in force (a lenient server could read them as a request)."""
        rules = self.gate.rules
        if seen.partial:
            reason, rule_id = head_unread(size), None
        elif seen.kind == "other" and seen.host:
            denied = rules.name_denied(seen.host, key.dport)
            if denied is not None:
                reason = unparsed_host(seen.host, rules.rule(denied.rule_id), denied.rule_id)
                rule_id = denied.rule_id
            elif rules.has_path_rules():
                reason, rule_id = "a Host in a request this gateway does not parse", None
            else:
                return False
        else:
            return False
        self.gate.bus.log(
            LogEntry(
                EntryKind.HTTP, session=self.gate.session, proto="tcp", src=key.src,
                sport=key.sport, dst=key.dst, dport=key.dport,
                names=[seen.host] if seen.host else [], url=f"http://{seen.host or key.dst}",
                verdict="deny", rule_id=rule_id,
                rule=rules.describe(rule_id) if rule_id is not None else "", reason=reason,
            )
        )  # fmt: skip
        return True

    def closed(self, src: str, sport: int) -> None:
        """A connection closed before it was decided: a deferred one (a silent port
        probe) is still a flow, logged as denied."""
        deferred = self.gate.deferred
        key = next((k for k in deferred if k.src == src and k.sport == sport), None)
        if key is not None and deferred.pop(key, None) is not None:
            decision = Decision(Action.DENY, None, "closed before its TLS ClientHello")
            self.gate.log_flow(key, decision, names=())

    def terminates(self, sni: str, dst: str) -> bool:
        """Whether TLS to ``sni`` at ``dst`` is terminated (a secret's bound host, and
        ``dst`` really is its address)."""
        return bool(sni) and self.verified(sni, dst) and any(
            bound_to(b, sni) for b in self.bindings)  # fmt: skip

    def verified(self, host: str, dst: str) -> bool:
        """Whether ``dst`` really is ``host``'s address (no Host header vouches for it)."""
        host = host.rstrip(".").lower()
        if host in self.gate.names.names_for(dst):
            return True
        fake = self.gate.fake
        return fake is not None and fake.is_fake(dst) and fake.name_of(dst) == host

    def real_address(self, dst: str) -> str | None:
        """The real address behind a synthetic one (ask mode), once it is routed."""
        fake = self.gate.fake
        return fake.real_address(dst) if fake is not None and fake.is_fake(dst) else None
