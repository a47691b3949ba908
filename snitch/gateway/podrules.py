"""The netfilter rules of a pod: the gateway as a sidecar in the workload's namespace.

In a pod every container shares one network namespace, so the gateway cannot be the
workload's router (netfilter.py's layout). An init step (a short-lived container with
NET_ADMIN, like a service mesh's init container) installs these rules in that namespace
before the gateway and the workload start; the gateway, whose own uid is exempt, judges
what they queue. For every other uid (the workload's):

- mangle OUTPUT: every NEW flow (and every TCP SYN) that leaves the pod goes to NFQUEUE,
  with no bypass flag (no gateway listening: the kernel drops it, so we fail closed);
  not DNS (any address, port 53: redirected to the gateway's forwarder), nor traffic
  that stays in the pod (its own addresses, loopback: the filter table decides that);
- nat OUTPUT (inserted first, before Docker's embedded-resolver rules): DNS to anywhere
  goes to the forwarder; allowed TCP to the web ports goes to the transparent proxy (a
  flow the queue refused keeps its mark and is not redirected); CODERUN_FAKE holds the
  DNAT of allowed synthetic addresses (ask mode, fakeip.py);
- filter OUTPUT: a flow the queue marked ``DENY_MARK`` is refused (TCP RST) or dropped;
  Docker's embedded resolver (127.0.0.11), DNS that was not redirected, broadcast and
  multicast are dropped; in the pod, the gateway's reserved ports (``GATEWAY_PORTS``: its
  forwarder and proxy) are reached only through the redirects above.

IPv6 is disabled in the pod; ``pod_rules6`` drops it for every uid but the gateway's all
the same. ``pod_rules`` is a pure function: the Kubernetes renderer puts the same text
in its init container. Run as ``python3 -m snitch.gateway.podrules --gateway-uid N
[--web-ports 80,443]`` it applies them (iptables-restore --noflush: the rules of the
namespace's other owners stay).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

from snitch.gateway.netfilter import DENY_MARK, QUEUE_NUM

POD_DNS_PORT = 15053  # the gateway's DNS forwarder, on 127.0.0.1
POD_PROXY_PORT = 15001  # mitmproxy, transparent, on 127.0.0.1
GATEWAY_PORTS = (15000, 15099)  # reserved for the gateway: the workload may not reach them
POD_LISTEN = "127.0.0.1"
DOCKER_RESOLVER = "127.0.0.11"  # Docker's embedded DNS: in the pod's namespace, not ours
CHAIN = "CODERUN_POD"
FAKE_CHAIN = "CODERUN_FAKE"  # fakeip.py adds the DNAT of allowed synthetic addresses


def pod_rules(
    gateway_uid: int,
    dns_port: int = POD_DNS_PORT,
    web_ports: tuple[int, ...] = (),
    queue_num: int = QUEUE_NUM,
    proxy_port: int = POD_PROXY_PORT,
) -> str:
    """The iptables-restore input (IPv4) of a pod whose gateway runs as ``gateway_uid``.

    ``web_ports``: TCP ports whose allowed flows go through the proxy at ``proxy_port``
    (none: no proxy). Apply with ``iptables-restore --noflush``.
    """
    for port in (dns_port, proxy_port, *web_ports):
        if not 1 <= port <= 65535:
            raise ValueError(f"port {port} is not in 1-65535")
    if gateway_uid < 0 or queue_num < 0:
        raise ValueError("the gateway's uid and the queue number are not negative")
    gw = f"-m owner --uid-owner {gateway_uid} -j RETURN"
    mark = f"0x{DENY_MARK:x}/0x{DENY_MARK:x}"
    local = "-m addrtype --dst-type LOCAL"
    low, high = GATEWAY_PORTS
    web: list[str] = []
    proxy_in: list[str] = []
    if web_ports:
        ports = ",".join(str(p) for p in web_ports)
        web = [f"-A {CHAIN} -p tcp -m multiport --dports {ports} "
               f"-j REDIRECT --to-ports {proxy_port}"]  # fmt: skip
        proxy_in = [f"-A {CHAIN} {local} -p tcp --dport {proxy_port} "
                    "-m conntrack --ctstate DNAT -j RETURN"]  # fmt: skip
    return "\n".join(
        [
            "*mangle",
            f":{CHAIN} - [0:0]",
            f"-I OUTPUT 1 -j {CHAIN}",
            f"-A {CHAIN} {gw}",
            f"-A {CHAIN} {local} -j RETURN",
            f"-A {CHAIN} -p udp --dport 53 -j RETURN",
            f"-A {CHAIN} -p tcp --dport 53 -j RETURN",
            f"-A {CHAIN} -m conntrack --ctstate NEW -j NFQUEUE --queue-num {queue_num}",
            # A SYN that conntrack files under an old entry opens a new connection too.
            f"-A {CHAIN} -p tcp --tcp-flags SYN,ACK,FIN,RST SYN -j NFQUEUE --queue-num {queue_num}",
            "COMMIT",
            "*nat",
            f":{CHAIN} - [0:0]",
            f":{FAKE_CHAIN} - [0:0]",
            f"-I OUTPUT 1 -j {CHAIN}",
            f"-A {CHAIN} {gw}",
            f"-A {CHAIN} -p udp --dport 53 -j REDIRECT --to-ports {dns_port}",
            f"-A {CHAIN} -p tcp --dport 53 -j REDIRECT --to-ports {dns_port}",
            f"-A {CHAIN} {local} -j RETURN",
            f"-A {CHAIN} -m mark --mark {mark} -j RETURN",
            *web,
            f"-A {CHAIN} -j {FAKE_CHAIN}",
            "COMMIT",
            "*filter",
            f":{CHAIN} - [0:0]",
            f"-I OUTPUT 1 -j {CHAIN}",
            f"-A {CHAIN} {gw}",
            f"-A {CHAIN} -m mark --mark {mark} -p tcp -j REJECT --reject-with tcp-reset",
            f"-A {CHAIN} -m mark --mark {mark} -j DROP",
            f"-A {CHAIN} -d {DOCKER_RESOLVER} -j DROP",
            f"-A {CHAIN} -p udp --dport 53 -j DROP",  # DNS not redirected (never expected)
            f"-A {CHAIN} -p tcp --dport 53 -j REJECT --reject-with tcp-reset",
            f"-A {CHAIN} {local} -p udp --dport {dns_port} -m conntrack --ctstate DNAT -j RETURN",
            f"-A {CHAIN} {local} -p tcp --dport {dns_port} -m conntrack --ctstate DNAT -j RETURN",
            *proxy_in,
            f"-A {CHAIN} {local} -p tcp --dport {low}:{high} -j REJECT --reject-with tcp-reset",
            f"-A {CHAIN} {local} -p udp --dport {low}:{high} -j DROP",
            f"-A {CHAIN} ! -o lo -m addrtype ! --dst-type UNICAST -j DROP",
            "COMMIT",
            "",
        ]
    )


def pod_rules6(gateway_uid: int) -> str:
    """The ip6tables-restore input: nothing but the gateway sends IPv6 (the pod has
    none; this holds should an address appear)."""
    return "\n".join(
        [
            "*filter",
            f":{CHAIN} - [0:0]",
            f"-I OUTPUT 1 -j {CHAIN}",
            f"-A {CHAIN} -m owner --uid-owner {gateway_uid} -j RETURN",
            f"-A {CHAIN} -j DROP",
            "COMMIT",
            "",
        ]
    )


def installed() -> bool:
    """Whether this namespace has the pod's rules (the gateway checks before it starts)."""
    tables = ("mangle", "nat", "filter")
    found = [subprocess.run(["iptables", "-t", t, "-S", CHAIN], capture_output=True)
             for t in tables]  # fmt: skip
    return all(proc.returncode == 0 for proc in found)


def wait_installed(timeout: float = 60.0) -> None:
    """Wait for the init step (it runs beside the gateway's start); never judge a packet
    in a namespace without the rules."""
    deadline = time.monotonic() + timeout
    while not installed():
        if time.monotonic() > deadline:
            raise RuntimeError("the pod's rules never appeared (did its init step fail?)")
        time.sleep(0.05)


def _restore(tool: str, rules: str) -> None:
    proc = subprocess.run([tool, "--noflush"], input=rules, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{tool} failed: {proc.stderr.strip()}")


def _ports(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in text.split(",") if p.strip())


def main(argv: list[str] | None = None) -> int:
    """The init step: apply the pod's rules (and print them with ``--print``)."""
    parser = argparse.ArgumentParser(prog="python3 -m snitch.gateway.podrules")
    parser.add_argument("--gateway-uid", type=int, required=True)
    parser.add_argument("--web-ports", type=_ports, default=())
    parser.add_argument("--dns-port", type=int, default=POD_DNS_PORT)
    parser.add_argument("--proxy-port", type=int, default=POD_PROXY_PORT)
    parser.add_argument("--queue-num", type=int, default=QUEUE_NUM)
    parser.add_argument("--print", action="store_true", help="print the rules, apply nothing")
    args = parser.parse_args(argv)
    try:
        rules = pod_rules(args.gateway_uid, args.dns_port, args.web_ports, args.queue_num,
                          args.proxy_port)  # fmt: skip
        rules6 = pod_rules6(args.gateway_uid)
        if args.print:
            print(rules, end="")
            return 0
        _restore("iptables-restore", rules)
        _restore("ip6tables-restore", rules6)
    except (ValueError, RuntimeError, OSError) as exc:
        print(f"coderun pod rules: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
