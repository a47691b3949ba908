"""Issue 2: a real sandbox behind a real NFQUEUE gateway, against the demo internet."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import docker
import pytest

from sandbox.config import SessionConfig
from sandbox.internet import DemoInternet
from sandbox.session import Session
from snitch.core.model import Mode
from snitch.core.settings import NetworkShape, RunSettings, Topology
from tests.e2e.conftest import Result, coderun_cmd, leftovers, wait_for

PROBE = Path(__file__).with_name("probe.py")


@pytest.fixture(params=list(Topology), ids=str)
def topology(request: pytest.FixtureRequest) -> Topology:
    """Every test here runs in both topologies: routed, and the gateway as a pod's sidecar."""
    return Topology(request.param)


POLICY = """
[[rule]]
action = "allow"
host = "api.example.test"

[[rule]]
action = "allow"          # evil may be looked up ...
host = "evil.example.test"
proto = "dns"

[[rule]]
action = "deny"           # ... but not connected to
host = "evil.example.test"
"""


def probe_results(result: Result) -> dict[str, dict[str, object]]:
    out = {}
    for line in result.stdout.splitlines():
        if line.startswith("{"):
            item = json.loads(line)
            out[item["step"]] = item
    return out


@pytest.fixture()
def ca_file(tmp_path: Path, internet: DemoInternet) -> Path:
    path = tmp_path / "ca.pem"
    path.write_bytes(internet.ca_pem())
    return path


def steps(internet: DemoInternet) -> list[str]:
    evil = internet.hosts["evil.example.test"]
    return [
        "http:http://api.example.test/hello",
        "http:https://api.example.test/secure,/ca.pem",
        "connect:evil.example.test:80",
        f"udp:{internet.ip}:7",
        f"udp:{evil}:7",
        f"icmp:{internet.ip}",
        f"icmp:{evil}",
    ]


def run_probe(
    run_coderun: Callable[..., Result],
    internet: DemoInternet,
    ca_file: Path,
    tmp_path: Path,
    *args: str,
) -> Result:
    policy = tmp_path / "policy.toml"
    policy.write_text(POLICY)
    return run_coderun(
        "--policy",
        str(policy),
        "-v",
        f"{PROBE}:/probe.py:ro",
        "-v",
        f"{ca_file}:/ca.pem:ro",
        *args,
        "--",
        "python3",
        "/probe.py",
        *steps(internet),
    )


def test_enforce_allows_and_denies_by_name(
    run_coderun: Callable[..., Result],
    internet: DemoInternet,
    ca_file: Path,
    tmp_path: Path,
    client: docker.DockerClient,
) -> None:
    result = run_probe(run_coderun, internet, ca_file, tmp_path, "--mode", "enforce")
    assert result.status == 0, result.stderr
    got = probe_results(result)
    s = steps(internet)
    assert got[s[0]]["ok"] and "hello from api.example.test /hello" in str(got[s[0]]["detail"])
    assert got[s[1]]["ok"], got[s[1]]
    assert "hello from api.example.test /secure" in str(got[s[1]]["detail"])
    # A denied name is refused at once, not left to time out.
    assert not got[s[2]]["ok"] and "ConnectionRefused" in str(got[s[2]]["detail"])
    assert float(got[s[2]]["seconds"]) < 1.0  # type: ignore[arg-type]
    # UDP and ICMP: the allowed address answers, the denied one gets nothing.
    assert got[s[3]]["ok"] and got[s[3]]["detail"] == "ping-coderun"
    assert not got[s[4]]["ok"] and "timed out" in str(got[s[4]]["detail"])
    assert got[s[5]]["ok"]
    assert not got[s[6]]["ok"] and "timed out" in str(got[s[6]]["detail"])

    evil = internet.hosts["evil.example.test"]
    # The log names every flow, with its verdict and the rule that decided it.
    allowed_http = result.flows(proto="tcp", dst=internet.ip, dport=80)
    assert allowed_http and allowed_http[0].verdict == "allow"
    assert "api.example.test" in allowed_http[0].names
    assert allowed_http[0].rule == "allow api.example.test/any"
    assert result.flows(proto="tcp", dst=internet.ip, dport=443, verdict="allow")
    refused = result.flows(proto="tcp", dst=evil, dport=80)
    assert refused and refused[0].verdict == "deny" and "evil.example.test" in refused[0].names
    assert refused[0].rule == "deny evil.example.test/any"
    assert result.flows(proto="udp", dst=internet.ip, dport=7, verdict="allow")
    assert result.flows(proto="udp", dst=evil, dport=7, verdict="deny")
    assert result.flows(proto="icmp", dst=internet.ip, verdict="allow")
    assert result.flows(proto="icmp", dst=evil, verdict="deny")
    # The A lookup's line (connect() asks for A and AAAA at once: their lines come in
    # either order, and the AAAA one has no answers).
    lookups = result.dns(qname="evil.example.test", qtype="A", verdict="allow")
    assert lookups and lookups[0].answers == [evil], result.dns(qname="evil.example.test")
    assert not leftovers(client)


def test_audit_lets_everything_through_and_logs_it(
    run_coderun: Callable[..., Result],
    internet: DemoInternet,
    ca_file: Path,
    tmp_path: Path,
) -> None:
    result = run_probe(run_coderun, internet, ca_file, tmp_path, "--mode", "audit")
    assert result.status == 0, result.stderr
    got = probe_results(result)
    assert [item for item in got.values() if not item["ok"]] == []
    evil = internet.hosts["evil.example.test"]
    for proto, port in (("tcp", 80), ("udp", 7), ("icmp", 8)):
        entries = result.flows(proto=proto, dst=evil)
        assert entries and entries[0].verdict == "allow", (proto, entries)
        assert "would deny" in entries[0].reason
        assert entries[0].dport == port
    assert result.flows(proto="tcp", dst=internet.ip, dport=443, verdict="allow")


def test_unmatched_name_is_not_resolved_in_enforce_mode(
    run_coderun: Callable[..., Result],
    internet: DemoInternet,
    tmp_path: Path,
) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text('[[rule]]\naction = "allow"\nhost = "api.example.test"\n')
    mark = len(internet.logs())
    result = run_coderun(
        "--policy", str(policy), "-v", f"{PROBE}:/probe.py:ro", "--", "python3", "/probe.py",
        "resolve:other.example.test", "resolve:api.example.test",
    )  # fmt: skip
    got = probe_results(result)
    assert not got["resolve:other.example.test"]["ok"]
    assert result.dns(qname="other.example.test", verdict="deny")
    seen = internet.logs(mark)
    assert "DNS other.example.test" not in seen
    # Control: in the same run an allowed name is looked up upstream, and the log shows it.
    assert got["resolve:api.example.test"]["ok"] and "DNS api.example.test" in seen


def test_exit_status_passes_through_and_nothing_is_left(
    run_coderun: Callable[..., Result],
    client: docker.DockerClient,
) -> None:
    result = run_coderun("--", "sh", "-c", "echo out; echo err >&2; exit 7")
    assert result.status == 7
    assert "out" in result.stdout and "err" in result.stderr
    assert not leftovers(client)


@pytest.mark.parametrize("sig,status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_cleans_up(
    home: Path,
    internet: DemoInternet,
    tags: dict[str, str],
    client: docker.DockerClient,
    sig: signal.Signals,
    status: int,
    topology: Topology,
) -> None:
    proc = subprocess.Popen(
        coderun_cmd(
            "run",
            "--egress-network",
            internet.network_name,
            "--dns-upstream",
            internet.ip,
            "--topology",
            str(topology),
            "--",
            "sleep",
            "60",
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        wait_for(
            lambda: client.containers.list(
                filters={
                    "label": ["coderun.role=sandbox", f"coderun.owner-pid={proc.pid}"],
                    "status": "running",
                }  # fmt: skip
            ),
            "the sandbox",
        )
        proc.send_signal(sig)
        assert proc.wait(timeout=30) == status
    finally:
        proc.kill()
    assert not leftovers(client)


def _kill_gateway_handler(client: docker.DockerClient, home: Path) -> float:
    state = next((home / "sessions").glob("*/gateway.json"))
    mine = [f"coderun.session={state.parent.name}", "coderun.role=gateway"]  # not another run's
    gateway = client.containers.list(filters={"label": mine})[0]
    pid = json.loads(state.read_text())["pid"]
    code, out = gateway.exec_run(["sh", "-c", f"kill -9 {pid}"])
    assert code == 0, out
    return time.monotonic()


def test_killing_the_queue_handler_leaves_no_network(
    home: Path,
    internet: DemoInternet,
    tags: dict[str, str],
    client: docker.DockerClient,
    topology: Topology,
) -> None:
    """Drive a session through the orchestration API (no CLI watchdog stopping the
    sandbox), kill the gateway's handler and watch the sandbox keep trying."""
    config = SessionConfig(
        image=tags["sandbox-bash"],
        network=NetworkShape(gateway_image=tags["gateway"], topology=topology,
                             egress_network=internet.network_name, dns_upstream=internet.ip),
        run=RunSettings(command=("python3", "/probe.py", f"loop:{internet.ip}:80:30"),
                        mode=Mode.AUDIT),
        volumes=[f"{PROBE}:/probe.py:ro"],
    )  # fmt: skip
    session = Session(client, config)
    try:
        session.start()
        assert session.sandbox is not None
        session.sandbox.start()
        sandbox = session.sandbox

        def results() -> list[dict[str, object]]:
            lines = sandbox.logs(stdout=True, stderr=False).decode().splitlines()
            return [json.loads(line) for line in lines if line.startswith("{")]

        wait_for(lambda: any(r["ok"] for r in results()), "a first connection")
        killed_at = _kill_gateway_handler(client, home)
        wait_for(
            lambda: len([r for r in results() if float(r["t"]) > killed_at + 0.5]) >= 3,  # type: ignore[arg-type]
            "attempts after the kill",
        )
        after = [r for r in results() if float(r["t"]) > killed_at]  # type: ignore[arg-type]
        assert not [r for r in after if r["ok"]], "a connection got out after the handler died"
        assert not session.gateway_alive()
    finally:
        session.close()
    assert not leftovers(client)


def test_cli_reports_a_dead_gateway(
    home: Path,
    internet: DemoInternet,
    tags: dict[str, str],
    client: docker.DockerClient,
    topology: Topology,
) -> None:
    proc = subprocess.Popen(
        coderun_cmd(
            "run",
            "--topology",
            str(topology),
            "--mode",
            "audit",
            "--egress-network",
            internet.network_name,
            "--dns-upstream",
            internet.ip,
            "--",
            "sleep",
            "60",
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(
            lambda: client.containers.list(
                filters={
                    "label": ["coderun.role=sandbox", f"coderun.owner-pid={proc.pid}"],
                    "status": "running",
                }  # fmt: skip
            ),
            "the sandbox",
        )
        _kill_gateway_handler(client, home)
        assert proc.wait(timeout=30) == 125
        assert proc.stderr is not None and "gateway stopped" in proc.stderr.read()
    finally:
        proc.kill()
    assert not leftovers(client)
