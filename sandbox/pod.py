"""A session in the pod topology (``coderun run --topology pod``): one network namespace
shared by the gateway and the sandbox, the way containers of a Kubernetes pod share one.

1. **holder** (the pod's "pause" container): owns the namespace, on the egress network
   (the pod's address is its address there); runs only ``sleep``, no capabilities.
   IPv6 off, ``tcp_syn_retries`` raised (a held SYN survives a person's decision) and
   ports under 1024 kept for root.
2. **init** (like a service mesh's init container): the gateway image with NET_ADMIN in
   that namespace runs ``python3 -m snitch.gateway.podrules``, installs the OUTPUT rules
   (snitch/gateway/podrules.py) and exits; the run goes on only if it succeeded. The
   rules are there before the gateway judges a packet or the workload starts, and stay
   when the gateway dies: a queue without a listener drops, so the pod fails closed.
3. **gateway** (the sidecar): starts beside the init step and waits for its rules
   before it says ready; joins the namespace (NET_ADMIN for its queue, the
   synthetic addresses' DNAT and conntrack), runs as ``GATEWAY_UID``, the uid the rules
   exempt; its forwarder and proxy listen on loopback ports the workload reaches only
   through the redirects; its control API is a unix socket in the session folder,
   which only the host and the gateway mount.
4. **sandbox** (the workload): joins the namespace as in the routed topology, no
   capabilities, ``no-new-privileges``, and never as ``GATEWAY_UID`` (the rules would
   not hold it).

Cleaning up is the routed topology's: everything carries the session's labels.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

import docker
import docker.errors
import requests
from docker.models.containers import Container
from docker.models.networks import Network
from docker.models.volumes import Volume

from sandbox import injected
from sandbox.config import SessionConfig, SessionError
from sandbox.gateway_code import gateway_volumes
from sandbox.sandbox_container import parse_user
from snitch.core.settings import GatewaySettings

GATEWAY_UID = 0  # the gateway container's uid: the one the pod's rules exempt
INIT_TIMEOUT = 60.0


class Session(Protocol):
    """What a pod needs of its session (sandbox/session.py, which calls ``start_pod``)."""

    client: docker.DockerClient
    config: SessionConfig
    id: str
    files_volume: Volume | None
    containers: list[Container]
    holder: Container | None
    gateway: Container | None
    gateway_ip: str
    sandbox_ip: str

    def role_labels(self, role: str) -> dict[str, str]: ...

    def gateway_settings(self, egress: Network, standby: bool) -> GatewaySettings: ...

    def gateway_data_mounts(self) -> dict[str, dict[str, str]]: ...

    def ready_check(self) -> Callable[[], bool]: ...


def check_user(user: str) -> None:
    """A pod's workload may not run as the gateway's uid (its flows would be exempt)."""
    try:
        uid = parse_user(user).uid
    except ValueError as exc:
        raise SessionError(str(exc)) from exc
    if uid == GATEWAY_UID:
        raise SessionError(
            f"--user {user}: with --topology pod the sandbox may not run as uid "
            f"{GATEWAY_UID}, the gateway's (its traffic would not be held)"
        )


def start_pod(session: Session, egress: Network, standby: bool) -> Callable[[], bool]:
    """Holder, init step and gateway of ``session``; the gateway's readiness check."""
    if standby:
        raise SessionError("coderun pool keeps routed sessions only (no --topology pod)")
    check_user(session.config.user)
    name = f"coderun-{session.id}"
    holder = _start_holder(session, name, egress)
    # The gateway starts beside its init step and waits for the rules before it is
    # ready (main.py); the sandbox starts only once it is.
    with ThreadPoolExecutor(max_workers=1) as pool:
        init = pool.submit(_run_init, session, name, holder)
        _start_gateway(session, name, egress, holder)
        init.result()
    return session.ready_check()


def _start_gateway(session: Session, name: str, egress: Network, holder: Container) -> None:
    settings = session.gateway_settings(egress, standby=False)
    gateway = session.client.containers.run(
        session.config.network.gateway_image,
        name=f"{name}-gw",
        detach=True,
        network_mode=f"container:{holder.id}",
        labels=session.role_labels("gateway"),
        environment=settings.to_env(),
        user=str(GATEWAY_UID),
        cap_add=["NET_ADMIN"],
        security_opt=["no-new-privileges"],
        init=True,
        volumes={**gateway_volumes(), **session.gateway_data_mounts()},
    )
    session.containers.append(gateway)
    session.gateway = gateway


def _start_holder(session: Session, name: str, egress: Network) -> Container:
    volume = session.files_volume
    holder = session.client.containers.create(
        session.config.network.gateway_image,
        name=f"{name}-ns",
        entrypoint=["sleep", "infinity"],
        network=egress.name,
        labels=session.role_labels("holder"),
        cap_drop=["ALL"],
        volumes=injected.holder_mount(volume) if volume is not None else None,
        sysctls={
            "net.ipv6.conf.all.disable_ipv6": "1",
            "net.ipv6.conf.default.disable_ipv6": "1",
            "net.ipv4.tcp_syn_retries": "7",
            "net.ipv4.ip_unprivileged_port_start": "1024",
        },
    )
    session.containers.append(holder)
    holder.start()
    holder.reload()
    address = holder.attrs["NetworkSettings"]["Networks"][egress.name]["IPAddress"]
    if not address:
        raise SessionError(f"the pod has no address on {egress.name}")
    session.holder = holder
    session.sandbox_ip = session.gateway_ip = address  # one namespace: one address
    return holder


def init_command(web_ports: tuple[int, ...]) -> list[str]:
    ports = ",".join(str(p) for p in web_ports)
    return ["python3", "-m", "snitch.gateway.podrules", "--gateway-uid", str(GATEWAY_UID),
            "--web-ports", ports]  # fmt: skip


def _run_init(session: Session, name: str, holder: Container) -> None:
    """The init step: install the pod's rules; an error if it did not succeed. It stays
    (exited) until the session is removed: nothing waits for its removal."""
    init = session.client.containers.run(
        session.config.network.gateway_image,
        name=f"{name}-init",
        entrypoint=init_command(session.config.network.web_ports),
        detach=True,
        network_mode=f"container:{holder.id}",
        labels=session.role_labels("init"),
        cap_drop=["ALL"],
        cap_add=["NET_ADMIN"],
        volumes=gateway_volumes(),
    )
    session.containers.append(init)
    try:
        status = int(init.wait(timeout=INIT_TIMEOUT)["StatusCode"])
    except (requests.exceptions.RequestException, docker.errors.APIError) as exc:
        raise SessionError(f"the pod's init step did not finish: {exc}") from exc
    if status != 0:
        out = init.logs(tail=20).decode(errors="replace").strip()
        raise SessionError(f"the pod's init step failed ({status}): {out}")
