"""The decision service's rules: the existing sqlite rule store, as a Policy kept fresh.

The store's generation is read at most every ``RECHECK`` seconds (and after every write
of the service's own), so another writer (``coderun rules add`` on the service's machine)
is seen within a second without a query per decision.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from snitch.core.explain import Explanation
from snitch.core.model import Decision, Query, Rule
from snitch.core.policy import Policy, check_rule
from snitch.core.store import RuleStore

RECHECK = 1.0


class FleetRules:
    def __init__(self, store: RuleStore, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.clock = clock
        self._generation = -1
        self._checked = -RECHECK
        self._policy = Policy([])
        self._by_id: dict[int, Rule] = {}
        self.listeners: list[Callable[[], None]] = []  # called after the rules changed
        self.fresh(force=True)

    def fresh(self, force: bool = False) -> Policy:
        now = self.clock()
        if force or now - self._checked >= RECHECK:
            self._checked = now
            generation = self.store.generation()
            if generation != self._generation:
                self._generation = generation
                rules = self.store.list(include_disabled=False)
                self._by_id = {r.id: r for r in rules if r.id is not None}
                self._policy = Policy(rules, clock=self.clock)
                for listener in self.listeners:
                    listener()
        return self._policy

    def decide(self, query: Query) -> Decision | None:
        return self.fresh().decide(query)

    def explain(self, query: Query) -> Explanation:
        return self.fresh().explain(query)

    def rule(self, rule_id: int | None) -> Rule | None:
        return self._by_id.get(rule_id) if rule_id is not None else None

    def decide_with(self, rule: Rule, query: Query) -> Decision | None:
        """What the rules would decide with ``rule`` stored too (a dry run)."""
        return Policy([*self.fresh().rules, rule], clock=self.clock).decide(query)

    def all_rules(self) -> list[Rule]:
        return self.store.list()

    # -- writes: each one is seen at once --------------------------------------------------
    def add(self, rule: Rule) -> Rule:
        check_rule(rule)
        rule.id = None
        rule.id = self.store.add(rule)
        self.fresh(force=True)
        return rule

    def remove(self, rule_id: int) -> bool:
        ok = self.store.remove(rule_id)
        self.fresh(force=True)
        return ok

    def set_enabled(self, rule_id: int, enabled: bool) -> bool:
        ok = self.store.set_enabled(rule_id, enabled)
        self.fresh(force=True)
        return ok

    def update(self, rule: Rule) -> bool:
        check_rule(rule)
        ok = self.store.update(rule)
        self.fresh(force=True)
        return ok
