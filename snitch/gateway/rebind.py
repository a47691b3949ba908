"""The rebinding guard: an allowed name never leads inside (see snitch/gateway/addresses.py).

Three places ask it:

- the DNS forwarder, for each address in an answer: one inside is dropped from the
  reply and never learnt as the name's (``answer_dropped``);
- the flow gate, for a flow allowed to a real address inside: refused unless an
  address/CIDR rule allows it or a person decided on that very address (``refuse``);
- ask mode, for the real address behind a synthetic one once a person allowed the name
  (``refuse_real``): refused unless an address/CIDR rule allows it.

A refusal is logged with the verdict ``rebind``. Audit mode allows every flow by design;
its DNS answers are filtered all the same.
"""

from __future__ import annotations

import ipaddress
import time

from snitch.core.model import Action, Decision, Mode, Proto, Query, Rule
from snitch.gateway.addresses import IPNetwork, ProtectedAddresses
from snitch.gateway.rulebook import RuleBook


class RebindGuard:
    def __init__(self, rules: RuleBook, protected: ProtectedAddresses | None = None) -> None:
        self.rules = rules
        self.protected = protected if protected is not None else ProtectedAddresses()
        self._version = -1
        self._allowing: list[tuple[IPNetwork, Rule]] = []

    def inside(self, ip: str) -> str | None:
        """Why ``ip`` is inside, or None (cached: cheap on the packet path)."""
        return self.protected.why(ip)

    def answer_dropped(self, ip: str) -> str | None:
        """Why an address in a DNS answer is left out, or None: the sandbox gets it
        (outside, or an allow rule by address/CIDR covers it on some port)."""
        why = self.protected.why(ip)
        if why is None or self._covered(ip):
            return None
        return why

    def refuse(
        self, proto: Proto, dst: str, port: int, decision: Decision, names: tuple[str, ...]
    ) -> Decision | None:
        """The refusal of a flow ``decision`` allowed to the real address ``dst``, or
        None. Inside, only an address/CIDR rule vouches, or a person's decision on the
        bare address (ask mode: no rule, no name); never a name nor an any-destination
        rule."""
        if decision.action is not Action.ALLOW or self.rules.mode is Mode.AUDIT:
            return None
        why = self.protected.why(dst)
        if why is None:
            return None
        rule = self.rules.rule(decision.rule_id)
        if rule is None and not names:
            return None
        if rule is not None and rule.cidr is not None:
            return None
        return self.refuse_real(proto, dst, port, decision, why)

    def refuse_real(
        self, proto: Proto, real: str, port: int, decision: Decision, why: str | None = None
    ) -> Decision | None:
        """The refusal of a flow to ``real``, where a name led, or None."""
        why = why or self.protected.why(real)
        if why is None or self._address_rule_allows(proto, real, port):
            return None
        return Decision(
            Action.DENY,
            decision.rule_id,
            f"rebind: {real} is {why}; a name does not vouch for it (allow it by address)",
        )

    def _address_rule_allows(self, proto: Proto, dst: str, port: int) -> bool:
        decision = self.rules.decide(Query(proto, dst, port, ()))
        if decision is None or decision.action is not Action.ALLOW:
            return False
        rule = self.rules.rule(decision.rule_id)
        return rule is not None and rule.cidr is not None

    def _covered(self, ip: str) -> bool:
        """An allow rule by address/CIDR in force for this run covers ``ip``."""
        if self._version != self.rules.version:
            self._version = self.rules.version
            self._allowing = []
            for rule in self.rules.rules_in_force():
                usable = rule.action is Action.ALLOW and rule.proto is not Proto.DNS
                if usable and rule.cidr and self._applies(rule):
                    net = ipaddress.ip_network(rule.cidr, strict=False)
                    self._allowing.append((net, rule))
        if not self._allowing:
            return False
        addr = ipaddress.ip_address(ip)
        now = time.time()
        return any(
            addr in net and (rule.expires_at is None or rule.expires_at > now)
            for net, rule in self._allowing
        )

    def _applies(self, rule: Rule) -> bool:
        """The rule is for this run (its session, scope), as far as an answer can tell."""
        if not rule.enabled or (rule.session is not None and rule.session != self.rules.session):
            return False
        kind, _, name = rule.scope.partition(":")
        if kind == "profile":
            return name == self.rules.profile
        if kind == "image":
            return name == self.rules.image
        return True
