"""What the dashboard needs from a gateway: the interface of ``snitch.review.client.GatewayClient``.

The UI depends only on :class:`GatewayLike`, so tests (and the screenshot script) can hand
it an in-memory gateway. Errors are reported as ``snitch.review.client.ApiError`` (the HTTP status
and message) or ``OSError`` when the socket cannot be reached.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Protocol

from snitch.core.apitypes import DecideResult, SessionInfo
from snitch.core.logentry import LogEntry
from snitch.core.model import DecisionRequest, Event, Pending, Rule
from snitch.review.client import ApiError, GatewayClient

__all__ = ["ApiError", "GatewayLike", "CONFLICT"]

CONFLICT = 409
"""ApiError status of a decision on an item that another dashboard decided first."""


class GatewayLike(Protocol):
    """One session's gateway control API."""

    session: str
    """The session id, shown as the label of the session's items."""

    async def info(self) -> SessionInfo: ...

    async def pending(self) -> list[Pending]: ...

    async def rules(self) -> list[Rule]: ...

    async def log(self, limit: int = 500) -> list[LogEntry]: ...

    async def explain(self, host: str, port: int = 0, proto: str = "tcp") -> dict[str, Any]:
        """``{"decision": {action, rule_id, reason} | None, "reason": str,
        "matches": [{"rule": {...}, "describe": str, "why": str}, ...]}``."""
        ...

    async def decide(self, request: DecisionRequest) -> DecideResult:
        """The ids decided and the rule stored; ApiError(409) if already decided."""
        ...

    async def add_rule(self, rule: Rule) -> Rule: ...

    async def remove_rule(self, rule_id: int) -> None: ...

    async def set_rule_enabled(self, rule_id: int, enabled: bool) -> None: ...

    async def update_rule(self, rule: Rule) -> Rule: ...

    async def ports(self) -> dict[str, Any]:
        """``{address, listening: [{proto, port, addr, seen, process}], forwards: [...]}``."""
        ...

    async def forward(self, port: int, host_port: int) -> dict[str, Any]: ...

    def events(self) -> AsyncIterator[Event]:
        """Every event from now on; the first one is a ``session`` event."""
        ...


def _conforms(client: GatewayClient) -> GatewayLike:
    """Never called: mypy checks here that the real client has the interface."""
    return client
