"""The file rules a share's daemon judges opens by: the rule store's and the run's
policy file's, with the session's scopes (profile, image, session), as the gateway's
rule book has them (snitch/gateway/rulebook.py; the policy file's rules get the same
negative ids, so a log line names the same rule).

A rule change takes effect at the next open: the store's generation is read before
every decision (one small query) and the rules reloaded when it moved. Hits of stored
rules are written back in batches, as the gateway does.
"""

from __future__ import annotations

import contextlib
import threading
import time
from pathlib import Path

from snitch.core.model import Decision, Proto, Query, Rule
from snitch.core.policy import Policy
from snitch.core.policyfile import load_policy
from snitch.core.store import RuleStore, StoreError

HIT_FLUSH_SECONDS = 1.0


class FileRules:
    def __init__(self, store: Path | None, policy: Path | None, session: str,
                 profile: str | None = None, image: str | None = None) -> None:  # fmt: skip
        self.session, self.profile, self.image = session, profile, image
        self._store = RuleStore(store) if store is not None else None
        extra = load_policy(policy) if policy is not None else []
        for n, rule in enumerate(extra, start=1):
            rule.id = -n
        self._extra = [r for r in extra if r.proto is Proto.FILE]
        self._lock = threading.Lock()
        self._generation: int | None = None
        self._rules: dict[int, Rule] = {}
        self._policy = Policy([])
        self._hits: dict[int, tuple[int, float]] = {}
        self._flushed = time.monotonic()
        self._reload()

    def _reload(self) -> None:
        rules = list(self._extra)
        if self._store is not None:
            self._generation = self._store.generation()
            stored = self._store.list(include_disabled=False)
            rules = [r for r in stored if r.proto is Proto.FILE] + rules
        self._rules = {r.id: r for r in rules if r.id is not None}
        self._policy = Policy(rules)

    def query(self, file: str, access: str, exe: str = "") -> Query:
        return Query(Proto.FILE, profile=self.profile, image=self.image, session=self.session,
                     exe=exe or None, file=file, access=access)  # fmt: skip

    def decide(self, query: Query) -> Decision | None:
        """The deciding rule's verdict (its hit counted), or None when no rule matches.
        A store that cannot be read for a moment keeps the rules last read."""
        with self._lock:
            if self._store is not None:
                # locked for a moment: the rules last read still hold
                with contextlib.suppress(StoreError):
                    if self._store.generation() != self._generation:
                        self._reload()
            decision = self._policy.decide(query)
            if decision is not None and decision.rule_id is not None and decision.rule_id > 0:
                count, _ = self._hits.get(decision.rule_id, (0, 0.0))
                self._hits[decision.rule_id] = (count + 1, time.time())
            if time.monotonic() - self._flushed >= HIT_FLUSH_SECONDS:
                self._flush()
            return decision

    def describe(self, rule_id: int | None) -> str:
        rule = self._rules.get(rule_id) if rule_id is not None else None
        return rule.describe() if rule is not None else ""

    def _flush(self) -> None:
        self._flushed = time.monotonic()
        if self._store is not None and self._hits:
            hits, self._hits = self._hits, {}
            with contextlib.suppress(StoreError):  # bookkeeping: never a reason to refuse
                self._store.record_hits(hits)

    def close(self) -> None:
        with self._lock:
            self._flush()
