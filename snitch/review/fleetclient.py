"""The dashboard's client of a decision service (``coderun dashboard --server URL``).

Each session of the fleet is a ``FleetSessionClient``: the control API's client
(``GatewayClient``: same methods, same wire types) whose requests go to the service's
``/v1/sessions/<id>/...`` over TLS instead of a gateway's unix socket. Its ``session``
(what the dashboard shows) is the id followed by the session's labels.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

from snitch.core.apitypes import SessionInfo
from snitch.core.fleetclient import ServiceClient, ServiceError
from snitch.core.fleetwire import SESSIONS, session_path
from snitch.core.model import Event
from snitch.review.client import ApiError, GatewayClient


def shown_name(info: SessionInfo) -> str:
    """``ID [k=v,k=v]``: the session as a fleet dashboard names it."""
    return f"{info.session} [{','.join(info.labels)}]" if info.labels else info.session


class FleetSessionClient(GatewayClient):
    def __init__(self, service: ServiceClient, info: SessionInfo) -> None:
        super().__init__(Path("/nonexistent"), service.token, shown_name(info))
        self.service = service
        self.session_id = info.session
        self.labels = info.labels

    async def request(self, method: str, path: str, body: Any = None) -> Any:
        try:
            return await self.service.request(method, session_path(self.session_id, path), body)
        except ServiceError as exc:
            raise ApiError(exc.status or 503, exc.message) from exc

    async def events(self) -> AsyncIterator[Event]:
        try:
            async for d in self.service.stream(session_path(self.session_id, "events")):
                yield Event(str(d["topic"]), d["data"], int(d.get("seq", 0)))
        except ServiceError as exc:
            raise ApiError(exc.status or 503, exc.message) from exc


async def fleet_sessions(
    service: ServiceClient, labels: Sequence[str] = ()
) -> list[FleetSessionClient]:
    """A client for every session of the fleet that has all of ``labels``."""
    try:
        listed = await service.request("GET", SESSIONS)
    except ServiceError as exc:
        raise ApiError(exc.status or 503, exc.message) from exc
    infos = [SessionInfo.from_dict(d) for d in listed if isinstance(d, dict)]
    return [FleetSessionClient(service, info) for info in infos
            if all(label in info.labels for label in labels)]  # fmt: skip
