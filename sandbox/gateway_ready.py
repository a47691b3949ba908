"""Waiting for a session's gateway: how far it got (its ``gateway.json``, written by the
gateway) and whether its container exited (Docker, asked now and then). Session.start
waits on these with a deadline, never on a fixed sleep."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import TypeVar

import docker.errors
from docker.models.containers import Container

from sandbox.config import SessionError
from snitch.core.session_dir import GatewayStatus, SessionDir

READY_TIMEOUT = 30.0
POLL = 0.02  # seconds between two reads of gateway.json (a small file on a local disk)
DOCKER_EVERY = 10  # polls between two questions to Docker: did the gateway exit?
T = TypeVar("T")


def wait_for(cond: Callable[[], T], what: str, timeout: float = READY_TIMEOUT,
             interval: float = POLL) -> T:  # fmt: skip
    """``cond()`` once it is true; SessionError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = cond()
        if result:
            return result
        if time.monotonic() > deadline:
            raise SessionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def state_check(
    folder: SessionDir, gateway: Container, reached: Callable[[GatewayStatus], bool]
) -> Callable[[], bool]:
    """A condition for ``wait_for``: the gateway's ``gateway.json`` has ``reached`` the
    state wanted (and Docker is asked now and then whether the gateway exited)."""
    checks = 0

    def check() -> bool:
        nonlocal checks
        checks += 1
        status = folder.gateway_status()
        if status is not None and reached(status):
            return True
        return checks % DOCKER_EVERY == 0 and raise_if_exited(gateway)

    return check


def raise_if_exited(gateway: Container) -> bool:
    """Raise with the gateway's last lines if its container exited (else False)."""
    gateway.reload()
    if gateway.status == "exited":
        logs = gateway.logs(tail=20).decode(errors="replace")
        raise SessionError(f"the gateway failed to start:\n{logs}")
    return False


def running(gateway: Container | None) -> bool:
    """Whether the gateway's container still runs."""
    if gateway is None:
        return False
    with contextlib.suppress(docker.errors.NotFound):
        gateway.reload()
        return bool(gateway.status == "running")
    return False
