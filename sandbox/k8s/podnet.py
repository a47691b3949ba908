"""The netfilter rules a pod's init container installs (the sidecar topology).

In a pod every container shares one network namespace, so the gateway cannot be the
workload's router: the rules hook the OUTPUT path instead, the way service-mesh init
containers do. They are the gateway's own ``--topology pod`` rules
(snitch/gateway/podrules.py): for every uid but the gateway's, each new flow leaving the
pod goes to the gateway's queue (no bypass: while no gateway listens, nothing leaves);
lookups to any resolver are redirected to the gateway's forwarder and web ports to its
proxy; a flow the gateway marked denied is refused; the gateway's ports take only
redirected flows; no IPv6 leaves.

``init_rules`` is the one place the renderer asks for them (iptables-restore input for
IPv4 and IPv6, applied with ``--noflush``).
"""

from __future__ import annotations

from dataclasses import dataclass

from snitch.gateway.podrules import POD_DNS_PORT, POD_PROXY_PORT, pod_rules, pod_rules6

DNS_PORT = POD_DNS_PORT  # the gateway's forwarder in a pod, on 127.0.0.1
PROXY_PORT = POD_PROXY_PORT  # mitmproxy, transparent, on 127.0.0.1


@dataclass(frozen=True)
class InitRules:
    """The pod's rules: iptables-restore input for IPv4 and for IPv6."""

    v4: str
    v6: str


def init_rules(gateway_uid: int, web_ports: tuple[int, ...]) -> InitRules:
    """The rules of the pod's init step for a gateway running as ``gateway_uid`` that
    proxies ``web_ports`` (none: no proxy)."""
    return InitRules(pod_rules(gateway_uid, web_ports=web_ports), pod_rules6(gateway_uid))
