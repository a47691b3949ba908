"""The gateway's netfilter rules: queue every NEW sandbox flow, refuse what is marked.

Layout (inside the gateway's own network namespace):

- mangle PREROUTING: every NEW packet (and every TCP SYN) from the sandbox interface
  goes to NFQUEUE, unless the kernel verdict cache (kernelcache.py) decided it already
  (no bypass flag on the rule: without a listener the kernel drops it, so we fail closed),
  except DNS to the gateway's own resolver.
- filter FORWARD (policy DROP): established traffic passes; a packet the queue marked
  ``DENY_MARK`` is refused with a TCP RST (other protocols are dropped); only
  sandbox -> egress is forwarded. Nothing new is forwarded into the sandbox.
- filter INPUT: the sandbox may reach the gateway's DNS port and nothing else (and
  answer the connections the gateway opens to it: port forwards); from the egress
  network (which other runs' gateways may share: sandbox/egress.py) only replies to
  the gateway's own connections come in.
- nat PREROUTING: CODERUN_FAKE holds the DNAT of allowed synthetic addresses (ask mode).
- nat POSTROUTING: MASQUERADE out of the egress interface.
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
import time
from dataclasses import dataclass
from typing import Any

DENY_MARK = 0x1
CACHED_MARK = 0x2  # decided by the kernel verdict cache (kernelcache.py)
PEEK_MARK = 0x4  # an allowed web flow read in passing, not proxied (peeker.py)
PEEKED_MARK = 0x8  # ... whose request head has been read: the rest stays in the kernel
PEEK_HTTP_MARK = 0x10  # ... and its head was plain HTTP: its status and later requests are read
LOGGED_MARK = 0x20  # a packet of a connection read in passing that is copied to NFLOG
GLANCE_MARK = 0x40  # a cached plain-HTTP flow nothing could refuse: its head copied, not held
QUEUE_NUM = 0
PEEK_QUEUE = 1
# Connection marks of a web flow read in passing (peeklog.py): its end is awaited; a
# reply's status is awaited; its later requests are read (plain HTTP).
CT_READ = 0x100
CT_STATUS = 0x200
CT_REQUESTS = 0x400
PEEK_LOG_GROUP = 8  # NFLOG group of their FIN/RST packets, statuses and later requests
PEEK_LOG_RANGE = 2400  # bytes of each copied: headers and a request line with its Host


@dataclass(frozen=True)
class Interfaces:
    sandbox: str  # interface name on the sandbox network
    sandbox_ip: str  # the gateway's address there (the sandbox's router and resolver)
    sandbox_prefix: int
    egress: str  # interface of the default route


class SetupError(RuntimeError):
    pass


def _ip_json(*args: str) -> list[dict[str, object]]:
    out = subprocess.run(["ip", "-j", *args], check=True, capture_output=True, text=True).stdout
    data = json.loads(out or "[]")
    if not isinstance(data, list):  # the gateway runs with -O: no assert
        raise SetupError(f"unexpected output of ip -j {' '.join(args)}")
    return data


def discover(egress_subnet: str, egress_gateway: str | None, timeout: float = 30.0) -> Interfaces:
    """Wait until the sandbox network is attached and name both interfaces.

    The egress interface is the one in ``egress_subnet``; the other one is the sandbox's.
    Docker may move the default route to the network connected last, so it is put back
    on the egress network's gateway.
    """
    egress_net = ipaddress.ip_network(egress_subnet, strict=False)
    deadline = time.monotonic() + timeout
    while True:
        egress, sandbox = "", None
        for link in _ip_json("-4", "addr", "show"):
            name = str(link.get("ifname"))
            infos: list[dict[str, Any]] = link.get("addr_info", [])  # type: ignore[assignment]
            for addr in infos:
                if name == "lo":
                    continue
                if ipaddress.ip_address(str(addr["local"])) in egress_net:
                    egress = name
                else:
                    sandbox = (name, str(addr["local"]), int(addr["prefixlen"]))
        if egress and sandbox:
            if egress_gateway:
                subprocess.run(
                    ["ip", "route", "replace", "default", "via", egress_gateway, "dev", egress],
                    check=True,
                )
            return Interfaces(sandbox[0], sandbox[1], sandbox[2], egress)
        if time.monotonic() > deadline:
            raise SetupError("the sandbox network never appeared on the gateway")
        time.sleep(0.05)


def own_addresses() -> list[str]:
    """Every IPv4 address of this (the gateway's) namespace."""
    found: list[str] = []
    for link in _ip_json("-4", "addr", "show"):
        infos: list[dict[str, Any]] = link.get("addr_info", [])  # type: ignore[assignment]
        found.extend(str(a["local"]) for a in infos)
    return found


def default_gateways() -> list[str]:
    """The next hops of this namespace's default routes (the host, on Docker)."""
    routes = _ip_json("-4", "route", "show", "default")
    return [str(r["gateway"]) for r in routes if r.get("gateway")]


def ruleset(
    ifs: Interfaces, web_ports: tuple[int, ...] = (), proxy_port: int = 0, dns_port: int = 53,
    peek: bool = False, peek_log: bool = False,
) -> str:  # fmt: skip
    """The iptables-restore input (applied with --noflush: Docker's DNS rules stay).

    With ``web_ports`` and ``proxy_port``, allowed TCP to those ports is redirected to
    the transparent proxy (mitmproxy) listening on the gateway; with ``peek``, only
    those the flow gate did not mark ``PEEK_MARK``: the others are forwarded, their
    first data packets queued to ``PEEK_QUEUE`` until one carries ``PEEKED_MARK``; with
    ``peek_log``, what peeklog.py reads of them later is copied to ``PEEK_LOG_GROUP``.
    """
    sbx, egr, gw = ifs.sandbox, ifs.egress, ifs.sandbox_ip
    mark = f"0x{DENY_MARK:x}/0x{DENY_MARK:x}"
    proxy_in: list[str] = []
    redirect: list[str] = []
    peeking: list[str] = []
    peeked: list[str] = []
    pm = f"0x{PEEK_MARK:x}/0x{PEEK_MARK:x}"
    gm = f"0x{GLANCE_MARK:x}/0x{GLANCE_MARK:x}"
    if peek and web_ports and proxy_port:
        p, done = f"0x{PEEK_MARK:x}", f"0x{PEEKED_MARK:x}"
        peeking = [f"-A CODERUN_QUEUE -p tcp --tcp-flags SYN,FIN,RST,ACK ACK "
                   f"-m connmark --mark {p}/{p} -m length --length 40:80 "
                   f'-m u32 --u32 "0>>22&0x3C=20" -j CODERUN_EMPTY',
                   f"-A CODERUN_QUEUE -p tcp -m connmark --mark {p}/{p} "
                   f"-j NFQUEUE --queue-num {PEEK_QUEUE}",
                   *empty_segment_rules()]  # fmt: skip
        peeked = [f"-A FORWARD -i {sbx} -m mark --mark {p}/{p} -j CONNMARK --or-mark {p}",
                  f"-A FORWARD -i {sbx} -m mark --mark {done}/{done} "
                  f"-j CONNMARK --and-mark 0x{0xFFFFFFFF & ~PEEK_MARK:x}"]  # fmt: skip
        if peek_log:
            g = f"0x{GLANCE_MARK:x}"
            peeked = [f"-A FORWARD -m connmark --mark 0x{CT_READ:x}/0x{CT_READ:x} "
                      "-j CODERUN_PEEKLOG", *peeked, *peek_log_rules(ifs),
                      f"-A FORWARD -i {sbx} -m mark --mark {g}/{g} "
                      f"-j CONNMARK --or-mark 0x{CT_READ | CT_STATUS | CT_REQUESTS:x}"]  # fmt: skip
    if web_ports and proxy_port:
        ports = ",".join(str(p) for p in web_ports)
        # Only connections the nat table redirected may reach the proxy port.
        proxy_in = [f"-A INPUT -i {sbx} -p tcp --dport {proxy_port} -m conntrack --ctstate DNAT "
                    "-j ACCEPT"]  # fmt: skip
        redirect = [f"-A PREROUTING -i {sbx} -m mark --mark {mark} -j RETURN",
                    f"-A PREROUTING -i {sbx} -d {gw} -j RETURN",
                    # Read in passing, not proxied (a synthetic address is still routed).
                    *([f"-A PREROUTING -i {sbx} -m mark --mark {pm} -j CODERUN_FAKE",
                       f"-A PREROUTING -i {sbx} -m mark --mark {pm} -j RETURN",
                       f"-A PREROUTING -i {sbx} -m mark --mark {gm} -j CODERUN_FAKE",
                       f"-A PREROUTING -i {sbx} -m mark --mark {gm} -j RETURN"] if peek else []),
                    f"-A PREROUTING -i {sbx} -p tcp -m multiport --dports {ports} "
                    f"-j REDIRECT --to-ports {proxy_port}"]  # fmt: skip
    return "\n".join(
        [
            "*mangle",
            ":CODERUN_QUEUE - [0:0]",
            *([":CODERUN_EMPTY - [0:0]"] if peeking else []),
            *([":CODERUN_PEEKLOG - [0:0]"] if peek and peek_log else []),
            f"-A PREROUTING -i {sbx} -j CODERUN_QUEUE",
            # Decided in the kernel already (kernelcache.py), and logged from NFLOG.
            f"-A CODERUN_QUEUE -m mark --mark 0x{CACHED_MARK:x}/0x{CACHED_MARK:x} -j RETURN",
            f"-A CODERUN_QUEUE -d {gw} -p udp --dport {dns_port} -j RETURN",
            f"-A CODERUN_QUEUE -d {gw} -p tcp --dport {dns_port} -j RETURN",
            *peeking,
            f"-A CODERUN_QUEUE -m conntrack --ctstate NEW -j NFQUEUE --queue-num {QUEUE_NUM}",
            # A SYN that conntrack files under an old entry (a reused 5-tuple whose
            # entry lingers in CLOSE/TIME_WAIT) opens a new connection all the same.
            "-A CODERUN_QUEUE -p tcp --tcp-flags SYN,ACK,FIN,RST SYN "
            f"-j NFQUEUE --queue-num {QUEUE_NUM}",
            *peeked,
            "COMMIT",
            "*filter",
            ":FORWARD DROP [0:0]",
            f"-A INPUT -i {sbx} -d {gw} -p udp --dport {dns_port} -j ACCEPT",
            f"-A INPUT -i {sbx} -d {gw} -p tcp --dport {dns_port} -j ACCEPT",
            f"-A INPUT -i {sbx} -m mark --mark {mark} -p tcp -j REJECT --reject-with tcp-reset",
            f"-A INPUT -i {sbx} -m mark --mark {mark} -j DROP",
            *proxy_in,
            # Replies to connections the gateway opened (a port forward, ports.py): the
            # sandbox cannot make such an entry, its own connections are the originals.
            f"-A INPUT -i {sbx} -m conntrack --ctstate ESTABLISHED --ctdir REPLY -j ACCEPT",
            f"-A INPUT -i {sbx} -p tcp -j REJECT --reject-with tcp-reset",
            f"-A INPUT -i {sbx} -j DROP",
            # The egress network may be shared with other runs' gateways (their sandboxes'
            # way out): from there, only what belongs to the gateway's own connections.
            f"-A INPUT -i {egr} -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT",
            f"-A INPUT -i {egr} -j DROP",
            # Never forward what conntrack cannot follow (it was never queued, nor NATed).
            "-A FORWARD -m conntrack --ctstate INVALID,UNTRACKED -j DROP",
            # Refused: a new flow, or a peeked one whose request a deny rule names.
            f"-A FORWARD -i {sbx} -m mark --mark {mark} -p tcp -j REJECT --reject-with tcp-reset",
            f"-A FORWARD -i {sbx} -m mark --mark {mark} -j DROP",
            "-A FORWARD -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT",
            f"-A FORWARD -i {sbx} -o {egr} -m conntrack --ctstate NEW -j ACCEPT",
            "COMMIT",
            "*nat",
            ":CODERUN_FAKE - [0:0]",
            *redirect,
            f"-A PREROUTING -i {sbx} -j CODERUN_FAKE",
            f"-A POSTROUTING -o {egr} -j MASQUERADE",
            "COMMIT",
            "",
        ]
    )


def empty_segment_rules() -> list[str]:
    """A bare ACK of a connection being read (the handshake's last packet, mostly) is
    accepted in the kernel: the peeker would let it go unread, one queue round trip
    later. Empty means exactly that: IPv4 header of 20 bytes (checked before the jump)
    and a total length equal to it plus the TCP header's (u32: data offset). Any byte of
    payload, or IP options, and the packet is queued as before."""
    return [f"-A CODERUN_EMPTY -m length --length {20 + tcp} "
            f'-m u32 --u32 "0>>22&0x3C@12>>26&0x3C={tcp}" -j ACCEPT'
            for tcp in range(20, 64, 4)]  # fmt: skip


def peek_log_rules(ifs: Interfaces) -> list[str]:
    """What the kernel copies of a connection read in passing (``CT_READ``), without
    holding it: FIN and RST; the reply that starts a response while ``CT_STATUS`` is set
    (then cleared); a client packet with a request line while ``CT_REQUESTS`` is set
    (it sets ``CT_STATUS`` again). The last rules set the marks of a head just read."""
    sbx, egr = ifs.sandbox, ifs.egress
    log, status, requests = f"0x{LOGGED_MARK:x}", f"0x{CT_STATUS:x}", f"0x{CT_REQUESTS:x}"
    chain = "-A CODERUN_PEEKLOG"
    return [
        f"{chain} -p tcp --tcp-flags FIN FIN -j MARK --or-mark {log}",
        f"{chain} -p tcp --tcp-flags RST RST -j MARK --or-mark {log}",
        f"{chain} -i {egr} -m connmark --mark {status}/{status} "
        f'-m string --algo bm --to 140 --string "HTTP/1." -j MARK --or-mark {log}',
        f"{chain} -i {egr} -m mark --mark {log}/{log} "
        f"-j CONNMARK --and-mark 0x{0xFFFFFFFF & ~CT_STATUS:x}",
        f"{chain} -i {sbx} -m connmark --mark {requests}/{requests} "
        f'-m string --algo bm --to {PEEK_LOG_RANGE - 200} --string " HTTP/1." '
        f"-j MARK --or-mark {log}",
        f"{chain} -i {sbx} -m connmark --mark {requests}/{requests} -m mark --mark {log}/{log} "
        f"-j CONNMARK --or-mark {status}",
        f"{chain} -m mark --mark {log}/{log} -j NFLOG --nflog-group {PEEK_LOG_GROUP}",
        f"-A FORWARD -i {sbx} -m mark --mark 0x{PEEKED_MARK:x}/0x{PEEKED_MARK:x} "
        f"-j CONNMARK --or-mark 0x{CT_READ:x}",
        f"-A FORWARD -i {sbx} -m mark --mark 0x{PEEK_HTTP_MARK:x}/0x{PEEK_HTTP_MARK:x} "
        f"-j CONNMARK --or-mark 0x{CT_STATUS | CT_REQUESTS:x}",
    ]


def apply(
    ifs: Interfaces, web_ports: tuple[int, ...] = (), proxy_port: int = 0, peek: bool = False,
    peek_log: bool = False,
) -> None:  # fmt: skip
    rules = ruleset(ifs, web_ports, proxy_port, peek=peek, peek_log=peek_log)
    proc = subprocess.run(
        ["iptables-restore", "--noflush"], input=rules, capture_output=True, text=True
    )
    if proc.returncode != 0:
        raise SetupError(f"iptables-restore failed: {proc.stderr.strip()}")
    # IPv6 is disabled in the sandbox; refuse to forward any of it all the same.
    subprocess.run(["ip6tables", "-P", "FORWARD", "DROP"], capture_output=True)
