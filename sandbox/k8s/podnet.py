"""The netfilter rules a pod's init container installs (the sidecar topology).

In a pod every container shares one network namespace, so the gateway cannot be the
workload's router: the rules hook the OUTPUT path instead, the way service-mesh init
containers do. For every uid but the gateway's: each new flow leaving the pod goes to
the gateway's queue (no bypass: while no gateway listens, nothing leaves); lookups to any
resolver are redirected to the gateway's forwarder and web ports to its proxy; a flow the
gateway marked denied is refused; the gateway's ports take only redirected flows; no
IPv6 leaves.

``init_rules`` is the one place the renderer asks for them (iptables-restore input for
IPv4 and IPv6, applied with ``--noflush``).
"""

from __future__ import annotations

from dataclasses import dataclass

QUEUE_NUM = 0  # snitch/gateway/netfilter.py: the queue the flow gate reads
DENY_MARK = 0x1  # ... and the mark it sets on a denied flow
DNS_PORT = 15053  # the gateway's forwarder in a pod, on 127.0.0.1
PROXY_PORT = 15001  # mitmproxy, transparent, on 127.0.0.1
GATEWAY_PORTS = (15000, 15099)  # reserved for the gateway: the workload never reaches them
CHAIN = "CODERUN_POD"


@dataclass(frozen=True)
class InitRules:
    """The pod's rules: iptables-restore input for IPv4 and for IPv6."""

    v4: str
    v6: str


def _rules_v4(gateway_uid: int, dns_port: int, web_ports: tuple[int, ...],
              queue_num: int, proxy_port: int) -> str:  # fmt: skip
    gw = f"-m owner --uid-owner {gateway_uid} -j RETURN"
    mark = f"0x{DENY_MARK:x}/0x{DENY_MARK:x}"
    local = "-m addrtype --dst-type LOCAL"
    low, high = GATEWAY_PORTS
    web = proxy_in = []
    if web_ports:
        ports = ",".join(str(p) for p in web_ports)
        web = [
            f"-A {CHAIN} -p tcp -m multiport --dports {ports} -j REDIRECT --to-ports {proxy_port}"
        ]
        proxy_in = [
            f"-A {CHAIN} {local} -p tcp --dport {proxy_port} -m conntrack --ctstate DNAT -j RETURN"
        ]
    return "\n".join([
        "*mangle",
        f":{CHAIN} - [0:0]",
        f"-I OUTPUT 1 -j {CHAIN}",
        f"-A {CHAIN} {gw}",
        f"-A {CHAIN} {local} -j RETURN",
        f"-A {CHAIN} -p udp --dport 53 -j RETURN",
        f"-A {CHAIN} -p tcp --dport 53 -j RETURN",
        f"-A {CHAIN} -m conntrack --ctstate NEW -j NFQUEUE --queue-num {queue_num}",
        f"-A {CHAIN} -p tcp --tcp-flags SYN,ACK,FIN,RST SYN -j NFQUEUE --queue-num {queue_num}",
        "COMMIT",
        "*nat",
        f":{CHAIN} - [0:0]",
        f"-I OUTPUT 1 -j {CHAIN}",
        f"-A {CHAIN} {gw}",
        f"-A {CHAIN} -p udp --dport 53 -j REDIRECT --to-ports {dns_port}",
        f"-A {CHAIN} -p tcp --dport 53 -j REDIRECT --to-ports {dns_port}",
        f"-A {CHAIN} {local} -j RETURN",
        f"-A {CHAIN} -m mark --mark {mark} -j RETURN",
        *web,
        "COMMIT",
        "*filter",
        f":{CHAIN} - [0:0]",
        f"-I OUTPUT 1 -j {CHAIN}",
        f"-A {CHAIN} {gw}",
        f"-A {CHAIN} -m mark --mark {mark} -p tcp -j REJECT --reject-with tcp-reset",
        f"-A {CHAIN} -m mark --mark {mark} -j DROP",
        f"-A {CHAIN} {local} -p udp --dport {dns_port} -m conntrack --ctstate DNAT -j RETURN",
        f"-A {CHAIN} {local} -p tcp --dport {dns_port} -m conntrack --ctstate DNAT -j RETURN",
        *proxy_in,
        f"-A {CHAIN} {local} -p tcp --dport {low}:{high} -j REJECT --reject-with tcp-reset",
        f"-A {CHAIN} {local} -p udp --dport {low}:{high} -j DROP",
        "COMMIT",
        "",
    ])  # fmt: skip


def _rules_v6(gateway_uid: int) -> str:
    return "\n".join([
        "*filter",
        f":{CHAIN} - [0:0]",
        f"-I OUTPUT 1 -j {CHAIN}",
        f"-A {CHAIN} -m owner --uid-owner {gateway_uid} -j RETURN",
        f"-A {CHAIN} -o lo -j RETURN",
        f"-A {CHAIN} -j DROP",
        "COMMIT",
        "",
    ])  # fmt: skip


def init_rules(gateway_uid: int, web_ports: tuple[int, ...]) -> InitRules:
    """The rules of the pod's init step for a gateway running as ``gateway_uid`` that
    proxies ``web_ports`` (none: no proxy)."""
    return InitRules(
        _rules_v4(gateway_uid, DNS_PORT, web_ports, QUEUE_NUM, PROXY_PORT),
        _rules_v6(gateway_uid),
    )
