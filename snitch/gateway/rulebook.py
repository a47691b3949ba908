"""The rules in force for one session: the store's rules plus the run's policy file.

Reloads when the store's generation changes (the CLI or a dashboard edited rules),
counts rule hits in memory and writes them back in batches. After every change, and when
a rule expires, it calls its ``listeners`` (the revocation of flows a rule let through).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import logging
import math
import time
from collections.abc import Callable
from pathlib import Path

from snitch.core.blocklist import Blocklist
from snitch.core.grammar import Origin
from snitch.core.model import Action, Decision, Mode, Proto, Query, Rule
from snitch.core.policy import Policy, is_request_rule
from snitch.core.store import RuleStore, StoreError

log = logging.getLogger(__name__)
POLL_SECONDS = 0.25
NAMED_KEPT = 4096  # names name_denied keeps answers for (then it starts again)
_VERSIONS = itertools.count(1)


class RuleBook:
    def __init__(
        self,
        store_path: Path | None,
        extra: list[Rule],
        mode: Mode,
        session: str = "",
        profile: str | None = None,
        image: str | None = None,
    ) -> None:
        self.mode = mode
        self.session = session
        self.profile = profile
        self.image = image
        self.labels: tuple[str, ...] = ()  # "KEY=VALUE": scopes label:K=V apply
        self._extra = extra
        self._blocklist: Blocklist | None = None
        self._blocklist_generation = -1
        self._store = RuleStore(store_path) if store_path is not None else None
        self._generation: object = None
        self._rules: dict[int, Rule] = {}
        self._hits: dict[int, tuple[int, float]] = {}
        self._policy = Policy([])
        self._task: asyncio.Task[None] | None = None
        self._next_expiry = math.inf
        # has_host_denies' answer: (version, answer)
        self._host_denies: tuple[int, bool] = (-1, False)
        # name_denied's answers: (version, valid until, {(name, port): decision})
        self._named: tuple[int, float, dict[tuple[str, int], Decision | None]] = (-1, 0.0, {})
        # Called after the rules in force changed: a reload, or a rule's expiry.
        self.listeners: list[Callable[[], None]] = []
        self.reload()

    def reload(self) -> None:
        self.version = next(_VERSIONS)  # unique across rule books: verdicts kept by it end
        rules: list[Rule] = []
        if self._store is not None:
            self._generation = self._store.generation()
            rules.extend(self._store.list(include_disabled=False))
        # Policy-file rules have no store id; give them negative ids so logs can name them.
        for n, rule in enumerate(self._extra, start=1):
            rule.id = -n
            rules.append(rule)
        self._rules = {r.id: r for r in rules if r.id is not None}
        self._path_rules = any(is_request_rule(r) for r in rules)
        # The request rules with their path and method left out: which destinations have
        # their requests decided one by one (``request_rules``).
        self._requests = Policy(
            [dataclasses.replace(r, path_prefix=None, method=None, action=Action.ALLOW)
             for r in rules if is_request_rule(r)]
        )  # fmt: skip
        self._exe_rules = any(r.exe for r in rules)
        self._signatures: dict[int, tuple[object, ...]] = {}
        now = time.time()
        self._next_expiry = min(
            (r.expires_at for r in rules if r.expires_at is not None and r.expires_at > now),
            default=math.inf,
        )
        self._descriptions: dict[int, str] = {}
        if self._store is not None:
            # Loading a big blocklist takes a second: only when the blocklist changed.
            generation = self._store.blocklist_generation()
            if generation != self._blocklist_generation:
                self._blocklist = self._store.blocklist_load()
                self._blocklist_generation = generation
        self._policy = Policy(rules, blocklist=self._blocklist)
        self._changed()

    def _changed(self) -> None:
        for listener in self.listeners:
            try:
                listener()
            except Exception:  # pragma: no cover - a listener's bug must not stop reloads
                log.exception("rule change listener")

    def configure(
        self, extra: list[Rule], mode: Mode, profile: str | None, image: str | None
    ) -> None:
        """A run's own part: its policy-file rules, mode and scopes. The store's rules
        are read again; the blocklist (slow to load) only if it changed."""
        self.mode, self.profile, self.image = mode, profile, image
        self._extra = extra
        self.reload()

    def learn(self, rule: Rule) -> None:
        """Keep ``rule`` for this run beside its policy-file rules (a lasting decision of
        the decision service, for this session only): the rules in force are reloaded."""
        self._extra = [*self._extra, rule]
        self.reload()

    def query(self, query: Query) -> Query:
        """The query with this session's context (profile, image, session id) filled in."""
        if (query.session, query.profile, query.image, query.labels) == (
            self.session, self.profile, self.image, self.labels
        ):  # fmt: skip
            return query  # built by for_flow() already
        # Built directly: dataclasses.replace costs more than the rest of a lookup.
        return Query(
            query.proto, query.dst, query.port, query.names, self.profile, self.image,
            self.session, query.flow, query.path, query.method, query.exe, query.file,
            query.access, self.labels,
        )  # fmt: skip

    def for_flow(self, proto: Proto, dst: str, port: int, names: tuple[str, ...]) -> Query:
        """A connection's query, with this session's context (the packet path's way)."""
        return Query(proto, dst, port, names, self.profile, self.image, self.session,
                     labels=self.labels)  # fmt: skip

    def decide(self, query: Query) -> Decision | None:
        """The matching rule's decision (hit counted), or None when no rule matches."""
        decision = self._policy.decide(self.query(query))
        if decision is not None:
            self.count_hit(decision.rule_id)
        return decision

    def name_denied(self, name: str, port: int) -> Decision | None:
        """The decision of a deny rule that names ``name`` (an SNI or a Host), judged by
        the name alone: such a rule refuses it whatever address it goes to. Kept per
        (name, port) while the rules in force hold (same version, no expiry passed):
        every web head read in passing asks, on the way to its verdict."""
        now = time.time()
        if self._named[0] != self.version or now >= self._named[1]:
            self._named = (self.version, self._next_expiry, {})
        known = self._named[2]
        if (name, port) in known:
            decision = known[(name, port)]
        else:
            decision = self._policy.decide(self.query(Query(Proto.TCP, None, port, (name,))))
            if decision is not None and decision.action is not Action.DENY:
                decision = None
            rule = self.rule(decision.rule_id) if decision is not None else None
            if rule is not None and rule.host is None:
                decision = None  # a deny of any destination is not about this name
            if len(known) >= NAMED_KEPT:
                known.clear()
            known[(name, port)] = decision
        if decision is not None:
            self.count_hit(decision.rule_id)
        return decision

    def has_host_denies(self) -> bool:
        """Whether a deny rule in force names a host, or a blocklist is loaded: either
        could refuse a web head by its Host or SNI (kept per version of the rules)."""
        if self._host_denies[0] != self.version:
            named = bool(self._blocklist) or any(
                r.action is Action.DENY and r.host is not None for r in self._policy.rules
            )
            self._host_denies = (self.version, named)
        return self._host_denies[1]

    def has_path_rules(self) -> bool:
        """Whether a rule in force looks at URL paths or methods (only a proxy sees them)."""
        return self._path_rules

    def has_exe_rules(self) -> bool:
        """Whether a rule in force narrows itself to a program (``Rule.exe``)."""
        return self._exe_rules

    def request_rules(self, query: Query) -> Decision | None:
        """Whether a request rule (``--path``/``--method``) is about this destination
        (its path and method left out): a connection no other rule decides then goes
        through, and each of its requests is decided (docs/rules.md). An allow naming
        the most specific such rule (whatever its action), or None."""
        if not self._path_rules:
            return None
        return self._requests.decide(self.query(query))

    def peek(self, query: Query) -> Decision | None:
        """Like ``decide``, without counting a hit (a re-check, not a flow)."""
        return self._policy.decide(self.query(query))

    def decide_with(self, rule: Rule, query: Query) -> Decision | None:
        """What the rules would decide if ``rule`` were added (a dry run: nothing changes)."""
        policy = Policy([*self._policy.rules, rule], blocklist=self._blocklist)
        return policy.decide(self.query(query))

    def signature(self, rule_id: int) -> tuple[object, ...] | None:
        """What the rule matches and decides (None if it is not loaded): equal
        signatures mean the same rule, across reloads."""
        found = self._signatures.get(rule_id)
        if found is None:
            r = self._rules.get(rule_id)
            if r is None:
                return None
            found = self._signatures[rule_id] = (
                r.action, r.host, r.cidr, r.port_lo, r.port_hi, r.proto, r.scope, r.priority,
                r.path_prefix, r.method, r.once_key, r.session, r.expires_at, r.enabled,
            )  # fmt: skip
        return found

    def in_force(self, rule_id: int | None) -> bool:
        """Whether the rule with ``rule_id`` is stored, enabled and not expired."""
        rule = self._rules.get(rule_id) if rule_id is not None else None
        if rule is None or not rule.enabled:
            return False
        return rule.expires_at is None or rule.expires_at > time.time()

    def count_hit(self, rule_id: int | None) -> None:
        """A stored rule decided a flow (written to the store in batches)."""
        if rule_id is not None and rule_id > 0:
            count, _ = self._hits.get(rule_id, (0, 0.0))
            self._hits[rule_id] = (count + 1, time.time())

    def valid_until(self) -> float:
        """When the next rule expires: until then, and while ``version`` holds, a
        decision made now stays the decision."""
        return self._policy.valid_until

    def verdict(self, query: Query) -> Decision:
        """The final verdict in enforce or audit mode (ask mode holds instead)."""
        decision = self.decide(query)
        if self.mode is Mode.AUDIT:
            would = decision.action if decision is not None else Action.DENY
            rule_id = decision.rule_id if decision is not None else None
            return Decision(Action.ALLOW, rule_id, f"audit (enforce would {would})", Origin.AUDIT)
        if decision is None:
            return Decision(Action.DENY, None, "no rule matched")
        return decision

    def add_rule(self, rule: Rule) -> Rule:
        """Store a rule (a decision made lasting) and put it in force at once."""
        if self._store is None:
            self._extra.append(rule)
        else:
            rule.id = self._store.add(rule)
        self.reload()
        return rule

    def remove_rule(self, rule_id: int) -> bool:
        ok = self._store.remove(rule_id) if self._store is not None else False
        self.reload()
        return ok

    def set_enabled(self, rule_id: int, enabled: bool) -> bool:
        ok = self._store.set_enabled(rule_id, enabled) if self._store is not None else False
        self.reload()
        return ok

    def update_rule(self, rule: Rule) -> bool:
        ok = self._store.update(rule) if self._store is not None else False
        self.reload()
        return ok

    def all_rules(self) -> list[Rule]:
        """Every rule in force or disabled, the store's and this run's."""
        stored = self._store.list(include_disabled=True) if self._store is not None else []
        return [*stored, *self._extra]

    def explain(self, query: Query) -> dict[str, object]:
        result: dict[str, object] = self._policy.explain(self.query(query)).to_dict()
        return result

    def rules_in_force(self) -> list[Rule]:
        """The enabled rules of this run (the store's and its own), as last loaded."""
        return list(self._rules.values())

    def rule(self, rule_id: int | None) -> Rule | None:
        return self._rules.get(rule_id) if rule_id is not None else None

    def describe(self, rule_id: int | None) -> str:
        if rule_id is None:
            return ""
        text = self._descriptions.get(rule_id)
        if text is None:  # every log line names its rule: described once per reload
            rule = self._rules.get(rule_id)
            text = rule.describe() if rule is not None else f"rule {rule_id}"
            self._descriptions[rule_id] = text
        return text

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._watch())

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(POLL_SECONDS)
            with contextlib.suppress(StoreError):
                self.flush_hits()
                if self._store is not None and self._store.generation() != self._generation:
                    self.reload()
            self.check_expiry()

    def check_expiry(self) -> None:
        """A rule expired since the last look: say so to the listeners."""
        now = time.time()
        if now < self._next_expiry:
            return
        self._next_expiry = min(
            (r.expires_at for r in self._rules.values()
             if r.expires_at is not None and r.expires_at > now),
            default=math.inf,
        )  # fmt: skip
        self._changed()

    def flush_hits(self) -> None:
        if self._store is not None and self._hits:
            hits, self._hits = self._hits, {}
            try:
                self._store.record_hits(hits)
            except StoreError:
                log.warning("could not record %d rule hits", len(hits))

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        with contextlib.suppress(StoreError):
            self.flush_hits()


def requests_decided(rules: RuleBook, query: Query) -> Decision | None:
    """Let a connection (or a lookup) through that no rule decides when request rules are
    about its destination: its requests are then decided one by one; None otherwise."""
    via = rules.request_rules(query)
    if via is None:
        return None
    why = f"its HTTP requests are decided one by one ({rules.describe(via.rule_id)})"
    return Decision(Action.ALLOW, via.rule_id, why, Origin.RULE)
