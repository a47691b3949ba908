"""Removing what sessions created: one session's objects, or every orphan (``coderun gc``).

Every container, network and volume coderun creates carries the labels ``coderun.session``
(the session id), ``coderun.owner-pid`` and ``coderun.owner-host``. A session is an
orphan when none of its objects' owner processes still runs on this host (a warm
session of ``coderun pool`` has two owners once a run claims it: the pool daemon for
the gateway and holder, the run for the sandbox).
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import docker
import docker.errors
from docker.models.containers import Container
from docker.models.networks import Network
from docker.models.volumes import Volume

from sandbox.labels import LABEL, OWNER_HOST, OWNER_PID, ROLE

RETRIES = 6  # up to ~4 s in all: a busy engine may take that long to remove a container
RETRY_SECONDS = 0.25


def pid_alive(pid: int) -> bool:
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
        return not pid_alive(int(labels.get(OWNER_PID, "0")))
    except ValueError:
        return True


def remove_session(
    client: docker.DockerClient,
    session_id: str,
    stop_gateway: Callable[[Container], None] | None = None,
) -> list[str]:
    """Remove the session's containers and then its networks and volumes. A container
    that joined another's network namespace (the sandbox; a pod's gateway and init step)
    goes before it; ``stop_gateway`` lets the gateway stop (flush its log) before its
    removal, side by side with the others'."""
    removed: list[str] = []
    selector = {"label": f"{LABEL}={session_id}"}
    # Sparse: one listing, no inspect per container (names and labels are in it).
    containers = client.containers.list(all=True, filters=selector, sparse=True,
                                        ignore_removed=True)  # fmt: skip
    joiners = [c for c in containers if _network_mode(c).startswith("container:")]
    # No container joins a gateway's namespace: once no joiner runs (the command ended),
    # its stop (the log's flush, the longest step) begins at once, beside the joiners'
    # removal. A sandbox still running (an interrupted run) goes first, as the rest do:
    # a stopping gateway no longer judges what it sends.
    early_gateway = not any(_live(c) for c in joiners)
    first = [c for c in containers
             if c in joiners or (early_gateway and _labels(c).get(ROLE) == "gateway")]  # fmt: skip

    def remove(container: Container) -> str | None:
        if stop_gateway is not None and _labels(container).get(ROLE) == "gateway":
            stop_gateway(container)
        return _remove_container(container)

    if containers:
        with ThreadPoolExecutor(max_workers=len(containers)) as pool:
            early = {c.id: pool.submit(remove, c) for c in first}
            joined = [early[c.id] for c in joiners]

            def after_joiners(container: Container) -> str | None:
                for done in joined:
                    done.result()
                return remove(container)

            late = [pool.submit(after_joiners, c) for c in containers if c.id not in early]
            removed.extend(r for f in [*early.values(), *late] if (r := f.result()))
    rest_of_it: list[Network | Volume] = [*client.networks.list(filters=selector),
                                          *client.volumes.list(filters=selector)]  # fmt: skip
    removed.extend(_parallel(_remove_network_or_volume, rest_of_it))
    return removed


def _labels(container: Container) -> dict[str, str]:
    """A container's labels, from a sparse listing or an inspect."""
    labels = container.attrs.get("Labels")
    if labels is None:
        labels = (container.attrs.get("Config") or {}).get("Labels")
    return dict(labels or {})


def _live(container: Container) -> bool:
    """Whether a container (from a sparse listing or an inspect) may still run a process;
    a state not known counts as live."""
    state = container.attrs.get("State")
    if isinstance(state, dict):
        state = state.get("Status")
    return state not in ("exited", "created", "dead")


def _network_mode(container: Container) -> str:
    return str((container.attrs.get("HostConfig") or {}).get("NetworkMode") or "")


def session_objects_left(client: docker.DockerClient, session_id: str) -> bool:
    """Whether any container, network or volume of the session is still there."""
    selector = {"label": f"{LABEL}={session_id}"}
    return bool(client.containers.list(all=True, filters=selector, ignore_removed=True)
                or client.networks.list(filters=selector)
                or client.volumes.list(filters=selector))  # fmt: skip


def _remove_container(container: Container) -> str | None:
    try:
        container.remove(force=True)
    except docker.errors.NotFound:
        return None
    names = container.attrs.get("Names") or [container.attrs.get("Name") or container.short_id]
    return f"container {str(names[0]).lstrip('/')}"


def _remove_network_or_volume(item: Network | Volume) -> str | None:
    return _remove_network(item) if isinstance(item, Network) else _remove_volume(item)


def _with_retries(remove: Callable[[], None]) -> None:
    """A network or volume whose container is being removed by someone else (another
    run's gc, a pool daemon) is still in use for a moment: try again a few times."""
    for attempt in range(RETRIES):
        try:
            remove()
            return
        except docker.errors.NotFound:
            raise
        except docker.errors.APIError:
            if attempt == RETRIES - 1:
                raise
            time.sleep(RETRY_SECONDS * (attempt + 1))


def _remove_volume(volume: Volume) -> str | None:
    try:
        _with_retries(lambda: volume.remove(force=True))
    except docker.errors.NotFound:
        return None
    except docker.errors.APIError:  # still in use: gc takes it
        return None
    return f"volume {volume.name}"


def _remove_network(network: Network) -> str | None:
    def remove() -> None:
        network.reload()
        for cid in list(network.attrs.get("Containers") or {}):
            with contextlib.suppress(docker.errors.APIError):
                network.disconnect(cid, force=True)
        network.remove()

    try:
        _with_retries(remove)
    except docker.errors.NotFound:
        return None
    return f"network {network.name}"


T = TypeVar("T")


def _parallel(fn: Callable[[T], str | None], items: list[T]) -> list[str]:
    """Docker removals are slow one by one and independent: do them side by side."""
    if len(items) <= 1:
        return [r for r in map(fn, items) if r]
    with ThreadPoolExecutor(max_workers=len(items)) as pool:
        return [r for r in pool.map(fn, items) if r]


def orphaned_sessions(client: docker.DockerClient, everything: bool = False) -> list[str]:
    """The sessions whose objects are all orphaned (every coderun session with
    ``everything``), found and not removed."""
    orphaned: dict[str, bool] = {}  # session -> every object seen so far is orphaned
    # Sparse: one listing, not an inspect per container (every run starts with this).
    everyone = client.containers.list(all=True, filters={"label": LABEL}, sparse=True,
                                      ignore_removed=True)  # fmt: skip
    labelled = [_labels(c) for c in everyone]
    networks = client.networks.list(filters={"label": LABEL})
    labelled += [n.attrs.get("Labels") or {} for n in networks]
    labelled += [v.attrs.get("Labels") or {} for v in client.volumes.list(filters={"label": LABEL})]
    for labels in labelled:
        sid = labels[LABEL]
        orphaned[sid] = orphaned.get(sid, True) and (everything or _orphaned(labels))
    return sorted(s for s, gone in orphaned.items() if gone)


def gc(client: docker.DockerClient, everything: bool = False) -> list[str]:
    """Remove orphaned sessions' objects (every coderun session's with ``everything``)."""
    removed: list[str] = []
    for session_id in orphaned_sessions(client, everything):
        removed.extend(remove_session(client, session_id))
    from sandbox import paths
    from sandbox.shares.mounts import gc_shares

    with contextlib.suppress(OSError, paths.DataDirError):  # FUSE mounts of runs that died
        removed.extend(gc_shares(paths.sessions_dir()))
    if everything:  # the shared egress network, once no gateway is on it (sandbox/egress.py)
        from sandbox.egress import remove_shared

        removed.extend(remove_shared(client))
    return removed
