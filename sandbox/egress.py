"""The long-lived egress network routed runs share when no ``--egress-network`` is named.

Creating and removing a bridge network costs a run about a fifth of a second, and the
egress network holds nothing of a run's but its gateway's way out. So routed runs (and
the pool's pairs) share one, ``coderun-egress``: made on first use with the label
``coderun.shared=egress``, never removed by a run's clean-up, removed by ``coderun gc
--all`` (listed by ``coderun gc``). It carries no session label: a session's clean-up
and ``coderun gc`` cannot take it.

Safe sharing: gateways on it must not reach each other's services. Each gateway drops
every packet that comes in on its egress interface unless it belongs to a connection
the gateway opened (snitch/gateway/netfilter.py), and forwards nothing new from there;
the rebinding guard counts the whole network as the host's (sandbox/host_networks.py:
it is not a named one), so no name leads there. A pod (``--topology pod``) puts the
sandbox itself on its egress network: it keeps a network of its own.
"""

from __future__ import annotations

import socket

import docker
import docker.errors
from docker.models.networks import Network

from sandbox.config import SessionError
from sandbox.labels import OWNER_HOST

NAME = "coderun-egress"
SHARED = "coderun.shared"  # the label; its value says what is shared
KIND = "egress"


def is_shared(network: Network) -> bool:
    return (network.attrs.get("Labels") or {}).get(SHARED) == KIND


def shared_egress(client: docker.DockerClient) -> Network:
    """The shared egress network, made if missing (by one of the runs racing to)."""
    for _ in range(3):
        try:
            network: Network = client.networks.get(NAME)
        except docker.errors.NotFound:
            try:
                made: Network = client.networks.create(
                    NAME, driver="bridge", check_duplicate=True,
                    labels={SHARED: KIND, OWNER_HOST: socket.gethostname()},
                )  # fmt: skip
                return made
            except docker.errors.APIError as exc:
                if exc.status_code != 409:  # 409: another run made it meanwhile
                    raise
                continue
        if not is_shared(network):
            raise SessionError(f"a Docker network named {NAME} exists and is not coderun's "
                               "shared egress network: remove it, or name an egress network "
                               "with --egress-network")  # fmt: skip
        return network
    raise SessionError(f"the shared egress network {NAME} could not be made or found")


def shared_networks(client: docker.DockerClient) -> list[Network]:
    """The shared networks there are (for ``coderun gc``)."""
    found: list[Network] = client.networks.list(filters={"label": f"{SHARED}={KIND}"})
    return found


def remove_shared(client: docker.DockerClient) -> list[str]:
    """Remove the shared networks no container uses (``coderun gc --all``)."""
    removed = []
    for network in shared_networks(client):
        try:
            network.remove()  # refused while a gateway is on it: it stays
        except docker.errors.NotFound:
            continue
        except docker.errors.APIError:
            continue
        removed.append(f"network {network.name}")
    return removed
