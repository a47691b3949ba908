"""The rule book a warm gateway re-configures for the run that claims it."""

from __future__ import annotations

from pathlib import Path

from snitch.core.model import Action, Mode, Proto, Query, Rule
from snitch.core.store import RuleStore
from snitch.gateway.rulebook import RuleBook


def test_configure_swaps_the_runs_part_and_keeps_the_store(tmp_path: Path) -> None:
    RuleStore(tmp_path / "rules.db").add(Rule(Action.ALLOW, host="api.example.test"))
    book = RuleBook(tmp_path / "rules.db", [Rule(Action.ALLOW, cidr="10.1.0.0/16")], Mode.ENFORCE)
    stored = Query(Proto.TCP, "10.2.0.9", 443, ("api.example.test",))
    own = Query(Proto.TCP, "10.1.0.9", 443, ())
    assert book.verdict(own).action is Action.ALLOW
    version = book.version

    book.configure([], Mode.AUDIT, "web", "python")
    assert book.version != version  # kept verdicts of the standby book end here
    assert (book.mode, book.profile, book.image) == (Mode.AUDIT, "web", "python")
    assert book.decide(own) is None  # the standby's policy-file rule is gone
    decision = book.decide(stored)
    assert decision is not None and decision.action is Action.ALLOW  # the store's stays
    assert book.verdict(own).reason == "audit (enforce would deny)"
