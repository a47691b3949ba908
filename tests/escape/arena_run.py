"""Running the escape arena (arena.py): the target network, the observers, the two
sessions side by side, their hostile scripts, and every observer collected before
anything is torn down."""

from __future__ import annotations

import json
import os
import random
import socket
import threading
import uuid
from functools import partial
from pathlib import Path
from typing import Any

import docker
import docker.errors
import docker.types
import pytest

from sandbox.cleanup import remove_session
from sandbox.config import SessionConfig
from sandbox.internet import DemoInternet
from sandbox.session import Session
from snitch.core.logfile import read_log
from snitch.core.model import Mode
from snitch.core.settings import NetworkShape, RunSettings
from tests.e2e.conftest import wait_for
from tests.escape.arena import (
    FLOOD,
    GARBAGE,
    HOST_PORT,
    LISTEN_PORT,
    PATTERNS,
    Arena,
    Side,
    dump,
    policy,
)
from tests.escape.helpers import (
    HERE,
    ContainerSniffer,
    HostListener,
    bridge_device,
    bridge_gateway,
    container_ip,
    helper_labels,
    link_local,
    new_ident,
    objects_of,
)
from tests.escape.sniffer import Sniffer


def _session(
    client: docker.DockerClient,
    tags: dict[str, str],
    internet: DemoInternet,
    mode: Mode,
    ctl: Path,
    policy_file: Path | None,
) -> Session:
    config = SessionConfig(
        image=tags["sandbox-bash"],
        network=NetworkShape(gateway_image=tags["gateway"],
                             egress_network=internet.network_name, dns_upstream=internet.ip),
        run=RunSettings(command=("python3", "/esc/hostile.py", "/ctl/targets.json"),
                        mode=mode),
        policy_file=policy_file,
        volumes=[f"{HERE}:/esc:ro", f"{ctl}:/ctl:ro"],
    )  # fmt: skip
    return Session(client, config)


def _results(session: Session) -> dict[str, dict[str, Any]]:
    assert session.sandbox is not None
    out = session.sandbox.logs(stdout=True, stderr=False).decode(errors="replace")
    return {d["attack"]: d for d in (json.loads(x) for x in out.splitlines() if x.startswith("{"))}


def _finished(session: Session) -> bool:
    """The hostile script printed ``done`` (or its container stopped: a crash)."""
    if "done" in _results(session):
        return True
    assert session.sandbox is not None
    session.sandbox.reload()
    return bool(session.sandbox.status != "running")


def _listening_ports(gateway: Any) -> list[int]:
    code, out = gateway.exec_run(["cat", "/proc/net/tcp"])
    assert code == 0, out
    ports = set()
    for line in out.decode().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        if state == "0A":
            ports.add(int(local.split(":")[1], 16))
    return sorted(ports)


EMBEDDED_DNS_CONTROL = r"""
import socket, struct, sys
name = sys.argv[1].encode()
q = struct.pack("!HHHHHH", 7, 0x0100, 1, 0, 0, 0)
q += b"".join(bytes([len(l)]) + l for l in name.split(b".")) + b"\0" + struct.pack("!HH", 1, 1)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(3)
s.sendto(q, ("127.0.0.11", 53)); r = s.recv(512)
print("rcode=%d answers=%d" % (r[3] & 15, struct.unpack("!H", r[6:8])[0]))
"""


def run_arena(
    client: docker.DockerClient, tags: dict[str, str], internet: DemoInternet, root: Path
) -> Arena:
    """Both sessions run their hostile scripts to the end; what every observer saw, and
    nothing left running (the sessions closed, their logs read)."""
    mp = pytest.MonkeyPatch()
    mp.setenv("CODERUN_HOME", str(root / "home"))
    ident = new_ident("escape")
    nonce = uuid.uuid4().hex[:10]
    sniffers: list[ContainerSniffer] = []
    listeners: list[HostListener] = []
    host_sniffers: dict[str, Sniffer] = {}
    sessions: list[Session] = []
    other_net = None
    target = None
    try:
        # A target on a network of its own, IPv4 and IPv6 (a ULA subnet made up here).
        r = random.Random()
        v6 = f"fd{r.randrange(256):02x}:{r.randrange(65536):04x}:{r.randrange(65536):04x}::/64"
        other_net = client.networks.create(
            f"coderun-{ident}-other",
            driver="bridge",
            enable_ipv6=True,
            ipam=docker.types.IPAMConfig(pool_configs=[docker.types.IPAMPool(subnet=v6)]),
            labels=helper_labels(ident, "target-net"),
        )
        target = client.containers.run(
            tags["sandbox-bash"],
            command=["sleep", "infinity"],
            name=f"coderun-{ident}-target",
            detach=True,
            network=other_net.name,
            labels=helper_labels(ident, "target"),
        )
        target.reload()
        target_net = target.attrs["NetworkSettings"]["Networks"][other_net.name]
        target_ip, target_v6 = target_net["IPAddress"], target_net["GlobalIPv6Address"]
        assert target_ip and target_v6, target_net
        code, if_inet6 = target.exec_run(["cat", "/proc/net/if_inet6"])
        target_ll = next(
            (ln.split()[0] for ln in if_inet6.decode().splitlines() if ln.startswith("fe80")), ""
        )
        patterns = list(PATTERNS.values())
        sniffers.append(
            ContainerSniffer(
                client, tags["sandbox-bash"], target, patterns, ident, "target-sniffer"
            )
        )
        sniffers.append(
            ContainerSniffer(
                client,
                tags["sandbox-bash"],
                internet.container,
                patterns,
                ident,
                "internet-sniffer",
            )
        )

        # The two sessions, started side by side.
        pol = root / "policy.toml"
        pol.write_text(policy(internet))
        sides = {}
        for role, mode in (("a", Mode.ENFORCE), ("b", Mode.AUDIT)):
            ctl = root / f"ctl-{role}"
            ctl.mkdir()
            (ctl / "ca.pem").write_bytes(internet.ca_pem())
            session = _session(client, tags, internet, mode, ctl, pol if role == "a" else None)
            sessions.append(session)
            sides[role] = Side(session, ctl)
        errors: list[BaseException] = []

        def start(s: Session) -> None:
            try:
                s.start()
            except BaseException as exc:  # re-raised below
                errors.append(exc)

        threads = [threading.Thread(target=start, args=(s,)) for s in sessions]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise errors[0]
        a, b = sides["a"], sides["b"]
        for side in (a, b):
            s = side.session
            assert s.gateway is not None and s.holder is not None
            inner = next(n for n in s.networks if n.name.endswith("-net"))
            side.bridge = bridge_gateway(inner)
            side.bridge_dev = bridge_device(inner)
            side.gateway_egress = container_ip(s.gateway, internet.network_name)
            side.holder_mac = s.holder.attrs["NetworkSettings"]["Networks"][inner.name][
                "MacAddress"
            ]
            side.gateway_mac = s.gateway.attrs["NetworkSettings"]["Networks"][inner.name][
                "MacAddress"
            ]
            sniffers.append(
                ContainerSniffer(
                    client, tags["sandbox-bash"], s.holder, patterns, ident, f"{s.id}-sniffer"
                )
            )
            host_sniffers[side.session.id] = Sniffer(side.bridge_dev, patterns)
            listeners.append(HostListener(side.bridge, HOST_PORT))
        egress_bridge = bridge_gateway(internet.network)
        listeners.append(HostListener(egress_bridge, HOST_PORT))
        # Positive control for the host listeners: the host reaches its own listener.
        with socket.create_connection((a.bridge, HOST_PORT), timeout=5):
            pass
        for sniffer in sniffers:
            sniffer.wait_ready()

        gw_ports = sorted({22, 80, 443, 8080, 8443, *_listening_ports(a.session.gateway)} - {53})
        for side, peer in ((a, b), (b, a)):
            s = side.session
            assert s.gateway is not None
            targets = {
                "role": "a" if side is a else "b",
                "nonce": nonce,
                "internet": internet.ip,
                "evil": internet.hosts["evil.example.test"],
                "tracker": internet.hosts["tracker.example.test"],
                "other": internet.hosts["other.example.test"],
                "gateway": s.gateway_ip,
                "gateway_egress": side.gateway_egress,
                "gateway_name": s.gateway.name,
                "gateway_ports": gw_ports,
                "self": s.sandbox_ip,
                "bridge": side.bridge,
                "bridge_ll": link_local(side.bridge_dev),
                "egress_bridge": egress_bridge,
                "host_port": HOST_PORT,
                "listen_port": LISTEN_PORT,
                "other_sandbox": peer.session.sandbox_ip,
                "target": target_ip,
                "target_v6": target_v6,
                "target_v6_host": str(other_net.attrs["IPAM"]["Config"][-1].get("Gateway", ""))
                or target_v6.rsplit(":", 1)[0] + ":1",
                "target_ll": socket.inet_ntop(socket.AF_INET6, bytes.fromhex(target_ll))
                if target_ll
                else "",
                "flood": FLOOD,
                "garbage": GARBAGE,
            }
            (side.ctl / "targets.json").write_text(json.dumps(targets))

        # Go: both hostile scripts at once.
        for side in (a, b):
            assert side.session.sandbox is not None
            side.session.sandbox.start()
        for side in (a, b):
            wait_for(partial(_finished, side.session), f"the script in {side.session.id}", 180)
        arena = Arena(
            a,
            b,
            internet,
            nonce,
            internet.hosts["evil.example.test"],
            internet.hosts["tracker.example.test"],
            internet.hosts["other.example.test"],
            target_ip,
            target_v6,
        )
        arena.gateway_alive_after = a.session.gateway_alive()
        gw_a = a.session.gateway
        assert gw_a is not None
        arena.queue_stats = gw_a.exec_run(
            ["cat", "/proc/net/netfilter/nfnetlink_queue"]
        ).output.decode()
        arena.embedded_dns_control = (
            gw_a.exec_run(["python3", "-c", EMBEDDED_DNS_CONTROL, gw_a.name])
            .output.decode()
            .strip()
        )
        assert a.session.sandbox is not None
        a.session.sandbox.reload()
        arena.sandbox_attrs = a.session.sandbox.attrs
        arena.api_socket_existed = a.session.api_socket.exists()
        for side in (a, b):
            (side.ctl / "stop").touch()
        for side in (a, b):
            assert side.session.sandbox is not None
            side.session.sandbox.wait(timeout=60)
            side.results = _results(side.session)
        # Collect every observer before anything is torn down.
        target_sniffer, internet_sniffer, sniffer_a, sniffer_b = sniffers
        arena.target_packets = target_sniffer.collect(target_ip)
        arena.internet_packets = internet_sniffer.collect(internet.ip)
        a.ns_packets = sniffer_a.collect(a.session.sandbox_ip)
        b.ns_packets = sniffer_b.collect(b.session.sandbox_ip)
        for side in (a, b):
            side.bridge_frames = host_sniffers.pop(side.session.id).stop()
        for side, listener in zip((a, b), listeners, strict=False):
            side.host_hits = [h for h in listener.hits if h["peer"] != listener.address]
            if side is a:
                arena.control_host_hit = any(h["peer"] == listener.address for h in listener.hits)
        a.host_hits += [dict(h, listener="egress") for h in listeners[2].hits]
        for sniffer in sniffers:
            sniffer.remove()
        sniffers.clear()
        for side in (a, b):
            side.session.close()  # the gateway flushes its log as it stops
            side.log = list(read_log(side.session.log_path))
        arena.left = objects_of(client, [a.session.id, b.session.id])
        arena.internet_log = internet.logs()
        if os.environ.get("CODERUN_ESCAPE_DUMP"):  # everything seen, for a person to read
            Path(os.environ["CODERUN_ESCAPE_DUMP"]).write_text(dump(arena))
        return arena
    finally:
        for sniffer in sniffers:
            sniffer.remove()
        for host_sniffer in host_sniffers.values():
            host_sniffer.stop()
        for listener in listeners:
            listener.close()
        for session in sessions:
            session.close()
        remove_session(client, ident)
        mp.undo()
