"""Removing what sessions created: one session's objects, or every orphan (``coderun gc``).

Every container and network coderun creates carries the labels ``coderun.session``
(the session id), ``coderun.owner-pid`` and ``coderun.owner-host``. An object is an
orphan when its owner process no longer runs on this host.
"""

from __future__ import annotations

import contextlib
import os
import socket

import docker
import docker.errors

from sandbox.session import LABEL, OWNER_HOST, OWNER_PID


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _orphaned(labels: dict[str, str]) -> bool:
    if labels.get(OWNER_HOST) != socket.gethostname():
        return False  # owned by another machine sharing this engine: leave it alone
    try:
        return not _pid_alive(int(labels.get(OWNER_PID, "0")))
    except ValueError:
        return True


def remove_session(client: docker.DockerClient, session_id: str) -> list[str]:
    """Remove the session's containers (sandbox first) and then its networks."""
    removed: list[str] = []
    selector = {"label": f"{LABEL}={session_id}"}
    containers = client.containers.list(all=True, filters=selector)
    # The sandbox joins the holder's namespace: remove it before the holder.
    order = {"sandbox": 0, "holder": 1, "gateway": 2}
    containers.sort(key=lambda c: order.get(c.labels.get("coderun.role", ""), 3))
    for container in containers:
        with contextlib.suppress(docker.errors.NotFound):
            container.remove(force=True)
            removed.append(f"container {container.name}")
    for network in client.networks.list(filters=selector):
        with contextlib.suppress(docker.errors.NotFound):
            network.reload()
            for cid in list(network.attrs.get("Containers") or {}):
                with contextlib.suppress(docker.errors.APIError):
                    network.disconnect(cid, force=True)
            network.remove()
            removed.append(f"network {network.name}")
    return removed


def gc(client: docker.DockerClient, everything: bool = False) -> list[str]:
    """Remove orphaned sessions' objects (every coderun session's with ``everything``)."""
    sessions: set[str] = set()
    for container in client.containers.list(all=True, filters={"label": LABEL}):
        if everything or _orphaned(container.labels):
            sessions.add(container.labels[LABEL])
    for network in client.networks.list(filters={"label": LABEL}):
        labels = network.attrs.get("Labels") or {}
        if everything or _orphaned(labels):
            sessions.add(labels[LABEL])
    removed: list[str] = []
    for session_id in sorted(sessions):
        removed.extend(remove_session(client, session_id))
    return removed
