"""The demo internet as a running container, for the demo and the tests."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass

import docker
from docker.models.containers import Container
from docker.models.networks import Network

from sandbox.cleanup import remove_session
from sandbox.config import SessionError
from sandbox.labels import LABEL, ROLE, owner_labels


@dataclass
class DemoInternet:
    network: Network
    container: Container
    ip: str  # api.example.test and every other name without an address of its own
    hosts: dict[str, str]  # names with addresses of their own (evil.example.test, ...)

    @property
    def network_name(self) -> str:
        return str(self.network.name)

    def ca_pem(self) -> bytes:
        code, out = self.container.exec_run(["cat", "/ca/ca.pem"])
        if code != 0:
            raise SessionError("the demo internet has no CA yet")
        return bytes(out)

    def logs(self, since: int = 0) -> str:
        """What it logged (requests, lookups), from character ``since`` on: one demo
        internet serves many runs, so take ``len(logs())`` first to see only yours."""
        return bytes(self.container.logs()).decode(errors="replace")[since:]

    def stop(self) -> None:
        remove_session(self.container.client, self.container.labels[LABEL])


def start_internet(client: docker.DockerClient, image: str, timeout: float = 30.0) -> DemoInternet:
    """Start the demo internet on a network of its own (give it as --egress-network)."""
    ident = "internet-" + uuid.uuid4().hex[:8]
    labels = owner_labels(ident)
    network = client.networks.create(
        f"coderun-{ident}", driver="bridge", labels={**labels, ROLE: "internet-net"}
    )
    container = client.containers.run(
        image,
        name=f"coderun-{ident}",
        detach=True,
        network=network.name,
        labels={**labels, ROLE: "internet"},
        cap_add=["NET_ADMIN"],
    )
    deadline = time.monotonic() + timeout
    while b"READY" not in container.logs():
        container.reload()
        if container.status == "exited" or time.monotonic() > deadline:
            logs = container.logs().decode(errors="replace")
            network.remove()
            container.remove(force=True)
            raise SessionError(f"the demo internet did not start:\n{logs}")
        time.sleep(0.05)
    container.reload()
    ip = container.attrs["NetworkSettings"]["Networks"][network.name]["IPAddress"]
    hosts: dict[str, str] = {}
    for line in container.logs().decode().splitlines():
        if line.startswith("HOSTS "):
            hosts = json.loads(line[6:])
    return DemoInternet(network, container, ip, hosts)
