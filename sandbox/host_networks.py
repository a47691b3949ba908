"""The host's addresses and networks, as the gateway needs them to stop DNS rebinding.

The gateway sees only its own two networks. Every Docker network's gateway address is
an address of the host (docker0's 172.17.0.1 among them), and every Docker network is
one the host serves: a DNS answer for an allowed name must never lead there
(snitch/gateway/addresses.py). The egress network is the exception when a person named it
(``--egress-network``): its members are the run's outside; only its gateway address
stays protected. An egress network coderun made holds nothing but the host's side.
"""

from __future__ import annotations

import ipaddress

import docker
from docker.models.networks import Network


def host_networks(client: docker.DockerClient, egress: Network, named: bool) -> list[str]:
    """Addresses and subnets (IPv4 and IPv6) no name may lead to
    (``GatewaySettings.host_networks``)."""
    found: list[str] = []
    for net in client.networks.list():
        for cfg in (net.attrs.get("IPAM") or {}).get("Config") or []:
            gateway, subnet = cfg.get("Gateway"), cfg.get("Subnet")
            if subnet and not gateway:  # Docker's default: the subnet's first address
                gateway = str(next(ipaddress.ip_network(subnet, strict=False).hosts(), ""))
            if gateway:
                found.append(str(gateway))
            if subnet and not (named and net.id == egress.id):
                found.append(str(subnet))
    return sorted(set(found))
