"""The gateway's link to a decision service (``coderun run --decision-service URL``).

In ask mode, every item the asker holds (no rule of the session's own decides it) is
asked of the service, with the session's labels (``fleetwire``): the service's rules
answer at once, or a person on a fleet dashboard does. The local dashboard may still
answer first; the question is then withdrawn. The answer releases the item; a lasting
rule it came from is kept for this session (``RuleBook.learn``), so the next flow to the
same place needs no question, and still works if the service goes away.

Fail closed: when the service cannot be reached, the item is denied at once (the
session's own rules went first), and the log says ``decision service unreachable: WHY``
once per outage (and ``reachable again`` when it answers). The log lines are reported to
the service in batches; what does not fit while it is away is dropped there (the
session's own log keeps everything).

The token and the service's certificate come in ``DECISION_FILE`` (0600, the gateway's
own filesystem), read once at start and removed.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from snitch.core.apitypes import SessionInfo
from snitch.core.fleetclient import ServiceClient, ServiceError
from snitch.core.fleetwire import (
    ASK,
    BY_SERVICE,
    LOG,
    LOG_BATCH,
    REACHABLE,
    UNREACHABLE,
    FleetAnswer,
    session_path,
)
from snitch.core.grammar import Origin, Topic
from snitch.core.logentry import EntryKind, LogEntry
from snitch.core.model import Action, Decision, Pending
from snitch.core.settings import DECISION_FILE
from snitch.gateway.asker import Asker
from snitch.gateway.events import EventBus
from snitch.gateway.rulebook import RuleBook

log = logging.getLogger(__name__)
REPORT_EVERY = 1.0  # seconds between log reports (and re-joins while away)
LOG_BACKLOG = 5_000  # log lines kept for the service while it is away


def read_credentials(path: Path = Path(DECISION_FILE)) -> tuple[str, str]:
    """(token, certificate PEM) from the private file; the file is removed."""
    data = json.loads(path.read_text())
    with contextlib.suppress(OSError):
        path.unlink()
    return str(data["token"]), str(data["ca"])


class LazyClient(ServiceClient):
    """The service's client, made when first used: the credentials file arrives after
    the gateway started (sandbox/session.py puts it in with the secrets)."""

    def __init__(self, url: str, credentials: Path = Path(DECISION_FILE)) -> None:
        self.url = url
        self.credentials = credentials
        self._client: ServiceClient | None = None

    async def request(self, method: str, path: str, body: Any = None, *,
                      timeout: float | None = 15.0) -> Any:  # fmt: skip
        if self._client is None:
            try:
                token, ca = read_credentials(self.credentials)
            except (OSError, ValueError, KeyError) as exc:
                raise ServiceError(0, f"no token for it ({exc})") from exc
            self._client = ServiceClient(self.url, token, ca)
        return await self._client.request(method, path, body, timeout=timeout)

    def ready(self) -> bool:
        """Whether the credentials arrived (the report loop waits for them quietly;
        a question, which comes after the sandbox started, always finds them)."""
        return self._client is not None or self.credentials.exists()

    def close(self) -> None:
        if self._client is not None:
            self._client.close()


class FleetLink:
    def __init__(
        self, client: ServiceClient, session: str, asker: Asker, rules: RuleBook,
        bus: EventBus, info: Callable[[], SessionInfo],
    ) -> None:  # fmt: skip
        self.client = client
        self.session = session
        self.asker = asker
        self.rules = rules
        self.bus = bus
        self.info = info
        self.down = False  # in an outage (said once in the log)
        self.down_since = ""  # the outage's first error
        self.joined = False
        self.asked: dict[str, asyncio.Task[None]] = {}
        self.backlog: deque[dict[str, Any]] = deque(maxlen=LOG_BACKLOG)
        self._task: asyncio.Task[None] | None = None
        bus.subscribe(self._on_event)

    @classmethod
    def of_run(
        cls, url: str | None, session: str, asker: Asker | None, rules: RuleBook,
        bus: EventBus, info: Callable[[], SessionInfo],
    ) -> FleetLink | None:  # fmt: skip
        """The run's link, if it has a decision service (and so ask mode)."""
        if url is None or asker is None:
            return None
        return cls(LazyClient(url), session, asker, rules, bus, info)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._report())

    # -- questions --------------------------------------------------------------------------
    def _on_event(self, topic: Topic, payload: dict[str, Any]) -> None:
        if topic == Topic.LOG:
            self.backlog.append(payload)
        elif topic == Topic.PENDING:
            item_id = str(payload.get("id"))
            network = payload.get("kind") in ("flow", "dns")  # a shared file's open: asked here
            if network and item_id not in self.asked and item_id in self.asker.held:
                item = Pending.from_dict(payload)
                self.asked[item_id] = asyncio.get_running_loop().create_task(self._ask(item))
        elif topic in (Topic.DECIDED, Topic.EXPIRED):
            task = self.asked.pop(str(payload.get("id")), None)
            if task is not None:  # decided here first: the service forgets the question
                task.cancel()

    async def _ask(self, item: Pending) -> None:
        path = session_path(self.session, ASK)
        if self.down and self._task is not None:
            # In an outage, denied at once: the report loop tries the service every
            # second and ends the outage when it answers (no connect timeout per flow).
            self.asked.pop(item.id, None)
            why = f"{UNREACHABLE} (since {self.down_since})"
            self.asker.settle(item.id, Decision(Action.DENY, None, why, Origin.DEFAULT), BY_SERVICE)
            return
        try:
            if not self.joined:
                await self._join()
            try:
                body = await self.client.request("POST", path, item.to_dict(), timeout=None)
            except ServiceError as exc:
                if exc.status != 404:  # 404: the service restarted and forgot this session
                    raise
                await self._join()
                body = await self.client.request("POST", path, item.to_dict(), timeout=None)
            answer = FleetAnswer.from_dict(body)
        except ServiceError as exc:
            self.asked.pop(item.id, None)
            self._failed(exc)
            why = f"{UNREACHABLE}: {exc.message}" if exc.unreachable else f"decision service: {exc}"
            self.asker.settle(item.id, Decision(Action.DENY, None, why, Origin.DEFAULT), BY_SERVICE)
            return
        except (KeyError, ValueError, TypeError) as exc:  # a service that speaks nonsense
            self.asked.pop(item.id, None)
            why = f"decision service: bad answer ({exc})"
            self.asker.settle(item.id, Decision(Action.DENY, None, why, Origin.DEFAULT), BY_SERVICE)
            return
        self._reachable()
        self.asked.pop(item.id, None)
        rule = answer.rule
        if rule is not None and rule.once_key is None:
            kept = dataclasses.replace(rule, id=None, session=self.session, source="service",
                                       note=f"decision service rule {rule.id}")  # fmt: skip
            self.rules.learn(kept)
        why = f"{BY_SERVICE}: {answer.decision.reason}"
        decision = dataclasses.replace(answer.decision, rule_id=None, reason=why)
        self.asker.settle(item.id, decision, BY_SERVICE)
        self.asker.recheck(BY_SERVICE)  # others the kept rule decides now

    # -- membership and log -----------------------------------------------------------------
    async def _join(self) -> None:
        info = dataclasses.replace(self.info(), prompts=None)
        await self.client.request("PUT", session_path(self.session), info.to_dict())
        self.joined = True

    async def _report(self) -> None:
        while True:
            await asyncio.sleep(REPORT_EVERY)
            if isinstance(self.client, LazyClient) and not self.client.ready():
                continue
            try:
                if not self.joined:
                    await self._join()
                while self.backlog:
                    size = min(LOG_BATCH, len(self.backlog))
                    batch = [self.backlog.popleft() for _ in range(size)]
                    await self.client.request("POST", session_path(self.session, LOG), batch)
                self._reachable()
            except ServiceError as exc:
                if exc.status == 404:
                    self.joined = False
                else:
                    self._failed(exc)

    def _failed(self, exc: ServiceError) -> None:
        if exc.unreachable or exc.status >= 500:
            self.joined = False
            if not self.down:
                self.down, self.down_since = True, exc.message
                self._say(f"{UNREACHABLE}: {exc.message}; undecided flows are denied")
                log.warning("%s: %s", UNREACHABLE, exc.message)

    def _reachable(self) -> None:
        if self.down:
            self.down = False
            self._say(REACHABLE)

    def _say(self, message: str) -> None:
        self.bus.log(LogEntry(EntryKind.EVENT, session=self.session, message=message))

    async def close(self) -> None:
        """Withdraw every question and leave the fleet (best effort, briefly)."""
        for task in [*self.asked.values(), *([self._task] if self._task else [])]:
            task.cancel()
        with contextlib.suppress(ServiceError, TimeoutError):
            async with asyncio.timeout(2):
                await self.client.request("DELETE", session_path(self.session))
        self.client.close()
