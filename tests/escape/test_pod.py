"""The pod topology's own attack surface: the workload shares the gateway's network
namespace (``--topology pod``). A hostile workload (podprobe.py) tries to take the
gateway's queue, change the rules, speak as the gateway's uid, reach the gateway's
control API and ports, and get around its resolver; the gateway's rules, log and the
demo internet's log say what really happened."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import pytest

from sandbox.config import SessionConfig
from sandbox.internet import DemoInternet
from sandbox.pod import GATEWAY_UID
from sandbox.ports import WATCHER
from sandbox.session import Session
from snitch.core.logentry import EntryKind, LogEntry
from snitch.core.logfile import read_log
from snitch.core.model import Mode
from snitch.core.settings import NetworkShape, RunSettings, Topology
from snitch.gateway.podrules import GATEWAY_PORTS
from tests.e2e.conftest import leftovers

pytestmark = pytest.mark.docker
PROBE = Path(__file__).with_name("podprobe.py")
POLICY = """
[[rule]]
action = "allow"
host = "api.example.test"

[[rule]]
action = "deny"
host = "evil.example.test"
"""
EPERM = "[Errno 1]"


@dataclass
class Pod:
    results: dict[str, dict[str, Any]]
    rules_before: str
    rules_after: str
    log: list[LogEntry]
    internet_log: str
    gateway_mode: str
    sandbox_attrs: dict[str, Any]
    evil: str
    watched: dict[str, set[int]] = field(default_factory=dict)
    left: list[str] = field(default_factory=list)


def _pod_rules(session: Session) -> str:
    assert session.gateway is not None
    code, out = session.gateway.exec_run(["iptables-save"])
    assert code == 0, out
    return "\n".join(x for x in out.decode().splitlines() if "CODERUN_POD" in x)


def _watched_ports(session: Session, not_ours: str) -> set[int]:
    """The ports the run's port watcher (sandbox/ports.py) reports, its first look."""
    assert session.holder is not None
    cmd = ["timeout", "2", "python3", "-c", WATCHER, "0.25", not_ours]
    out = session.holder.exec_run(cmd).output.decode()
    first = next(line for line in out.splitlines() if line.startswith("["))
    return {int(item["port"]) for item in json.loads(first)}


@pytest.fixture(scope="module")
def pod(
    client: docker.DockerClient,
    tags: dict[str, str],
    internet: DemoInternet,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Pod]:
    root = tmp_path_factory.mktemp("pod")
    mp = pytest.MonkeyPatch()
    home = root / "home"
    home.mkdir(mode=0o700)
    mp.setenv("CODERUN_HOME", str(home))
    policy = root / "policy.toml"
    policy.write_text(POLICY)
    evil = internet.hosts["evil.example.test"]
    config = SessionConfig(
        image=tags["sandbox-bash"],
        network=NetworkShape(gateway_image=tags["gateway"], topology=Topology.POD,
                             egress_network=internet.network_name, dns_upstream=internet.ip),
        run=RunSettings(command=("python3", "/probe.py", internet.ip, evil), mode=Mode.ENFORCE),
        policy_file=policy,
        volumes=[f"{PROBE}:/probe.py:ro"],
    )  # fmt: skip
    session = Session(client, config)
    mark = len(internet.logs())
    try:
        session.start()
        assert session.sandbox is not None and session.gateway is not None
        before = _pod_rules(session)
        session.sandbox.start()
        assert session.sandbox.wait(timeout=180)["StatusCode"] == 0
        out = session.sandbox.logs(stdout=True, stderr=False).decode(errors="replace")
        results = {d["attack"]: d for d in map(json.loads, out.splitlines()) if d}
        after = _pod_rules(session)
        session.gateway.reload()
        session.sandbox.reload()
        mode = session.gateway.attrs["HostConfig"]["NetworkMode"]
        watched = {uid: _watched_ports(session, uid) for uid in ("", str(GATEWAY_UID))}
        attrs = session.sandbox.attrs
    finally:
        session.close()
        mp.undo()
    pod = Pod(results, before, after, list(read_log(session.log_path)),
              internet.logs(mark), mode, attrs, evil, watched)  # fmt: skip
    mp.setenv("CODERUN_HOME", str(home))
    pod.left = leftovers(client)
    mp.undo()
    yield pod


def failed(pod: Pod, attack: str, text: str = "") -> bool:
    result = pod.results[attack]
    return not result["ok"] and text in str(result["detail"])


def test_gateway_and_workload_share_one_namespace(pod: Pod) -> None:
    assert pod.gateway_mode.startswith("container:")
    assert pod.sandbox_attrs["HostConfig"]["NetworkMode"] == pod.gateway_mode
    assert pod.results["done"]["ok"]


def test_the_workload_cannot_take_or_drop_the_gateways_queue(pod: Pod) -> None:
    assert failed(pod, "queue_bind", EPERM), pod.results["queue_bind"]
    assert failed(pod, "queue_unbind", EPERM), pod.results["queue_unbind"]


def test_the_workload_cannot_change_the_rules_or_the_interfaces(pod: Pod) -> None:
    assert "NFQUEUE" in pod.rules_before and pod.rules_after == pod.rules_before
    assert failed(pod, "loopback_down", EPERM), pod.results["loopback_down"]
    assert failed(pod, "raw_socket", EPERM), pod.results["raw_socket"]
    assert failed(pod, "bind_53", "[Errno 13]"), pod.results["bind_53"]


def test_the_workload_cannot_send_as_the_gateway(pod: Pod) -> None:
    assert failed(pod, "setuid_gateway", EPERM), pod.results["setuid_gateway"]
    assert failed(pod, "so_mark", EPERM), pod.results["so_mark"]
    caps = pod.sandbox_attrs["HostConfig"]
    assert caps["CapDrop"] == ["ALL"] and "no-new-privileges" in caps["SecurityOpt"]
    assert pod.sandbox_attrs["Config"]["User"] not in ("", "0", "root", "0:0")


def test_the_control_api_and_the_gateways_ports_are_out_of_reach(pod: Pod) -> None:
    result = pod.results["unix_sockets"]
    # The API's socket shows in the shared namespace's table, but is not reachable.
    assert failed(pod, "unix_sockets") and "api.sock" in result["detail"], result
    assert failed(pod, "gateway_tcp_ports", "none of"), pod.results["gateway_tcp_ports"]
    # Dropped in OUTPUT: the sender is told at once (EPERM), nothing reaches the forwarder.
    assert failed(pod, "forwarder_direct", EPERM), pod.results["forwarder_direct"]


def test_every_resolver_the_workload_asks_is_the_gateway(pod: Pod) -> None:
    # Another resolver's address, Docker's embedded one: both answered by the gateway.
    for attack in ("other_resolver", "docker_resolver"):
        result = pod.results[attack]
        assert result["ok"] and result["detail"] == "rcode=3 answers=0", result
    assert failed(pod, "docker_resolver_port"), pod.results["docker_resolver_port"]
    assert "DNS evil.example.test" not in pod.internet_log
    allowed = pod.results["resolver_allowed"]
    assert allowed["ok"] and allowed["detail"] == "rcode=0 answers=1", allowed
    assert "DNS api.example.test" in pod.internet_log  # control: looked up by the gateway
    refused = [e for e in pod.log if e.kind is EntryKind.DNS and e.qname == "evil.example.test"]
    assert refused and all(e.verdict == "deny" for e in refused)


def test_same_verdicts_and_log_as_the_routed_topology(pod: Pod) -> None:
    assert failed(pod, "denied_tcp", "Connection refused"), pod.results["denied_tcp"]
    assert pod.results["denied_tcp"]["seconds"] < 1.0  # refused at once, not timed out
    assert failed(pod, "denied_udp", "timed out"), pod.results["denied_udp"]
    http = pod.results["allowed_http"]
    assert http["ok"] and "hello from api.example.test /hello" in http["detail"], http
    assert pod.results["allowed_udp"]["ok"], pod.results["allowed_udp"]
    flows = [e for e in pod.log if e.kind is EntryKind.FLOW]
    evil = [e for e in flows if e.dst == pod.evil]
    assert {e.proto for e in evil} == {"tcp", "udp"}, flows
    assert all(e.verdict == "deny" for e in evil), evil
    assert any(e.verdict == "allow" and e.dport == 80 and "api.example.test" in e.names
               for e in flows)  # fmt: skip
    assert [e for e in pod.log if e.kind is EntryKind.HTTP and "api.example.test/hello" in e.url]


def test_the_gateways_listeners_are_not_shown_as_the_sandboxs(pod: Pod) -> None:
    ours = set(range(GATEWAY_PORTS[0], GATEWAY_PORTS[1] + 1))
    assert pod.watched[""] & ours  # control: without the filter, the gateway's show
    assert not pod.watched[str(GATEWAY_UID)] & ours


def test_the_pod_leaves_nothing_behind(pod: Pod) -> None:
    assert pod.left == []
