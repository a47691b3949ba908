"""Every open of a shared file is a decision (the share's daemon asks it before opening).

By the session's mode: a file rule decides first (sandbox/shares/rules.py); with no
rule, enforce refuses (``EACCES``), audit allows, and ask *holds* the open: the daemon
asks the session's gateway (``POST /v1/files/ask``), which shows it as a pending item
of kind ``file`` and answers once a person, a rule or the deadline decided. The ask has
a deadline of its own; an unreachable gateway, or one that does not answer in time,
refuses the open (fail closed). At most ``MAX_HELD`` opens wait at once (each holds one
of the daemon's threads): more are refused at once, so listing a folder never waits.

Each decision is a ``file`` line in the session's log (sandbox/shares/filelog.py).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from dataclasses import dataclass

from sandbox.shares.process import Asker
from sandbox.shares.rules import FileRules
from snitch.core.fileask import FileAsk
from snitch.core.grammar import Origin
from snitch.core.model import Action, Decision, Mode
from snitch.review.client import ApiError, GatewayClient

MAX_HELD = 32  # opens waiting for a person at once (the daemon runs MAX_HELD + 16 threads)
ASK_SLACK = 10.0  # seconds past the gateway's deadline before the daemon gives up

AskGateway = Callable[[FileAsk], Decision]


@dataclass(frozen=True, slots=True)
class Opening:
    """An open to decide: ``path`` as the person knows it (what rules match), ``shown``
    as the sandbox sees it, ``access`` read or write, and who asked."""

    path: str
    shown: str
    access: str
    who: Asker


class FileGate:
    def __init__(self, rules: FileRules, mode: Mode, ask: AskGateway | None = None) -> None:
        self.rules = rules
        self.mode = mode
        self.ask = ask
        self._held = threading.BoundedSemaphore(MAX_HELD)

    def decide(self, opening: Opening) -> Decision:
        decision = self.rules.decide(self.rules.query(opening.path, opening.access,
                                                      opening.who.exe))  # fmt: skip
        if self.mode is Mode.AUDIT:
            would = decision.action if decision is not None else Action.DENY
            rule_id = decision.rule_id if decision is not None else None
            return Decision(Action.ALLOW, rule_id, f"audit (enforce would {would})", Origin.AUDIT)
        if decision is not None:
            return decision
        if self.mode is Mode.ENFORCE or self.ask is None:
            return Decision(Action.DENY, None, "no rule matched")
        return self._held_open(opening)

    def _held_open(self, opening: Opening) -> Decision:
        if not self._held.acquire(blocking=False):
            why = f"ask: refused at once, {MAX_HELD} opens already wait"
            return Decision(Action.DENY, None, why, Origin.LIMIT)
        try:
            assert self.ask is not None
            who = opening.who
            ask = FileAsk(opening.path, opening.shown, opening.access, who.pid, who.cmdline,
                          who.exe)  # fmt: skip
            return self.ask(ask)
        except (ApiError, OSError, TimeoutError, ValueError, KeyError) as exc:
            return Decision(Action.DENY, None, f"gateway unreachable, refused: {exc}")
        finally:
            self._held.release()


def gateway_asker(client: GatewayClient, deadline: float) -> AskGateway:
    """Ask through the control API, waiting at most ``deadline`` seconds (from a FUSE
    worker thread: each ask runs its own short event loop)."""

    def ask(request: FileAsk) -> Decision:
        async def call() -> Decision:
            return await asyncio.wait_for(client.ask_file(request), deadline)

        return asyncio.run(call())

    return ask
