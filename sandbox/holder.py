"""The namespace holder of a routed session: a trusted container whose network namespace
the sandbox joins, re-addressed as a /32 whose only route is the gateway."""

from __future__ import annotations

import docker
from docker.models.containers import Container
from docker.models.volumes import Volume

from sandbox import injected
from sandbox.config import SessionError

# Run in the holder (by exec, once the gateway's address is known).
HOLDER_SCRIPT = r"""
set -e
set -- $(ip -4 -o addr show dev eth0)
SANDBOX_IP=${4%/*}
ip addr flush dev eth0
ip addr add "$SANDBOX_IP/32" dev eth0
ip route add "$GATEWAY_IP" dev eth0
ip route add default via "$GATEWAY_IP" dev eth0 onlink
# Docker's embedded resolver listens inside this namespace: make it unreachable.
iptables -A OUTPUT -d 127.0.0.11 -j DROP
# Broadcast and multicast would reach the bridge (and the host) without a route.
iptables -A OUTPUT -o eth0 -m addrtype ! --dst-type UNICAST -j DROP
# The sandbox gets this namespace's resolv.conf (and hosts, hostname) from Docker, read-only:
# its only resolver is the gateway, and no host path shows in its mount table.
printf 'nameserver %s\noptions timeout:2 attempts:2\n' "$GATEWAY_IP" > /etc/resolv.conf
"""


def create_holder(
    client: docker.DockerClient, image: str, name: str, network: str,
    labels: dict[str, str], volume: Volume,
) -> Container:  # fmt: skip
    """The holder container on the sandbox ``network`` (created, not started)."""
    return client.containers.create(
        image,
        name=name,
        entrypoint=["sleep", "infinity"],
        network=network,
        labels=labels,
        cap_add=["NET_ADMIN"],
        volumes=injected.holder_mount(volume),
        sysctls={
            "net.ipv6.conf.all.disable_ipv6": "1",
            "net.ipv6.conf.default.disable_ipv6": "1",
            # A held SYN must survive a person's decision: retry for ~2 minutes.
            "net.ipv4.tcp_syn_retries": "7",
            # No TCP Fast Open: data in a SYN would leave before a web flow's head is read
            # (peeker.py reads the first data packet after the handshake).
            "net.ipv4.tcp_fastopen": "0",
        },
    )


def address(holder: Container, network: str) -> str:
    """The holder's (hence the sandbox's) address on the sandbox network."""
    holder.reload()
    return str(holder.attrs["NetworkSettings"]["Networks"][network]["IPAddress"])


def set_up(holder: Container, gateway_ip: str) -> None:
    """Re-address the holder's namespace: a /32 whose only route is the gateway."""
    code, out = holder.exec_run(["sh", "-c", HOLDER_SCRIPT],
                                environment={"GATEWAY_IP": gateway_ip})  # fmt: skip
    if code != 0:
        raise SessionError(f"setting up the sandbox network failed: {out.decode().strip()}")
