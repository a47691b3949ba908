"""Sessions on one decision service, on real Docker (issue 19): a gateway asks the service
over TLS from its container, and when the service stops mid-run, new undecided flows are
denied at once (logged once) while rule-allowed ones keep working."""

from __future__ import annotations

import json
import os
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import docker
import pytest

from sandbox.internet import DemoInternet
from snitch.core.fleetwire import UNREACHABLE
from snitch.core.logentry import EntryKind
from snitch.core.model import Action, Proto, Rule
from snitch.core.store import RuleStore
from tests.e2e.conftest import coderun_cmd, latest_log, leftovers, wait_for

PROBE = Path(__file__).with_name("probe.py")
TOKEN = "e2e-fleet-token-" + "x" * 20


@dataclass
class Service:
    proc: subprocess.Popen[str]
    url: str
    token: Path
    cert: Path
    rules: Path

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@pytest.fixture()
def service(
    home: Path, internet: DemoInternet, client: docker.DockerClient, tmp_path: Path
) -> Iterator[Service]:
    """``coderun serve`` on the host, on the demo internet network's bridge address (the
    sessions' egress network: their gateways reach it there, nothing else does)."""
    network = client.networks.get(internet.network_name)
    host = network.attrs["IPAM"]["Config"][0]["Gateway"]
    port = free_port(host)
    token = tmp_path / "fleet.token"
    token.write_text(TOKEN + "\n")
    os.chmod(token, 0o600)
    rules = tmp_path / "fleet-rules.db"
    with RuleStore(rules) as store:  # the service's own rule: the fleet allows this host
        store.add(Rule(Action.ALLOW, host="fleet.example.test", port_lo=80, port_hi=80,
                       proto=Proto.TCP))  # fmt: skip
    proc = subprocess.Popen(
        coderun_cmd("serve", "--listen", f"{host}:{port}", "--token-file", str(token),
                    "--rules", str(rules)),
        env={**os.environ, "CODERUN_HOME": str(home)}, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    cert = home / "fleet" / "tls" / "cert.pem"

    def listening() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"coderun serve exited: {proc.stderr.read()}")  # type: ignore[union-attr]
        try:
            socket.create_connection((host, port), 0.5).close()
        except OSError:
            return False
        return cert.exists()

    wait_for(listening, "the decision service listening", 60)
    running = Service(proc, f"https://{host}:{port}", token, cert, rules)
    yield running
    running.stop()


def steps(lines: list[str]) -> list[dict[str, object]]:
    return [json.loads(line) for line in lines if line.startswith("{")]


def test_without_the_service_undecided_flows_are_denied_and_rule_allowed_ones_work(
    service: Service, home: Path, internet: DemoInternet, tmp_path: Path,
    client: docker.DockerClient,
) -> None:  # fmt: skip
    policy = tmp_path / "policy.toml"
    policy.write_text('[[rule]]\naction = "allow"\nhost = "api.example.test"\nport = 80\n')
    script = ("python3 /probe.py connect:fleet.example.test:80 connect:api.example.test:80; "
              "read go; python3 /probe.py connect:www.example.test:80 "
              "connect:fleet.example.test:80 connect:api.example.test:80")  # fmt: skip
    run = subprocess.Popen(
        coderun_cmd("run", "-i", "--egress-network", internet.network_name, "--dns-upstream",
                    internet.ip, "--decision-service", service.url, "--decision-token-file",
                    str(service.token), "--label", "team=e2e", "--policy", str(policy),
                    "--ask-timeout", "60", "--image", "python", "-v", f"{PROBE}:/probe.py:ro",
                    "--", "sh", "-c", script),
        env={**os.environ, "CODERUN_HOME": str(home)}, stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert run.stdin is not None and run.stdout is not None
    try:
        before = [run.stdout.readline() for _ in range(2)]  # the service is up
        first = steps(before)
        assert [s["ok"] for s in first] == [True, True], (before, run.stderr)
        service.stop()  # mid-run
        run.stdin.write("go\n")
        run.stdin.close()
        run.stdin = None  # closed: the sandbox's input ends
        out, err = run.communicate(timeout=120)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    after = steps(out.splitlines())
    assert [s["step"] for s in after] == ["connect:www.example.test:80",
                                          "connect:fleet.example.test:80",
                                          "connect:api.example.test:80"], (out, err)  # fmt: skip
    undecided, kept, local = after
    assert not undecided["ok"] and float(str(undecided["seconds"])) < 5, undecided  # refused now
    assert kept["ok"] and local["ok"], after  # the service's rule it was sent, its own rule
    log = latest_log(home)
    said = [e.message for e in log if e.kind is EntryKind.EVENT]
    assert len([m for m in said if m.startswith(UNREACHABLE)]) == 1, said
    denied = [e for e in log if e.kind is EntryKind.FLOW and e.verdict == "deny"
              and "www.example.test" in e.names]  # fmt: skip
    assert denied and UNREACHABLE in denied[0].reason, [e.to_dict() for e in log]
    asked = [e for e in log if e.kind is EntryKind.FLOW and "fleet.example.test" in e.names]
    assert asked[0].verdict == "allow" and "decision service" in asked[0].reason
    assert run.returncode == 0, err  # the probe reports failures as lines, not a status
    assert wait_for(lambda: not leftovers(client), "no leftovers", 60)


def fleet_pending(service: Service) -> dict[str, int]:
    """Session id -> how many items wait at the service (asked from the host)."""
    import asyncio

    from snitch.core.fleetclient import ServiceClient
    from snitch.core.fleetwire import session_path

    async def ask() -> dict[str, int]:
        client = ServiceClient(service.url, TOKEN, service.cert.read_text())
        try:
            sessions = await client.request("GET", "/sessions")
            return {s["session"]: len(await client.request(
                "GET", session_path(s["session"], "pending"))) for s in sessions}  # fmt: skip
        finally:
            client.close()

    return asyncio.run(ask())


def test_two_sessions_approved_from_one_fleet_dashboard(
    service: Service, home: Path, internet: DemoInternet, tmp_path: Path,
    client: docker.DockerClient,
) -> None:  # fmt: skip
    from tests.e2e.test_dashboard_tmux import Tmux
    from tests.needs import need_tool

    need_tool("tmux")
    runs = []
    for team, host in (("a", "alpha.example.test"), ("b", "beta.example.test")):
        runs.append(subprocess.Popen(
            coderun_cmd("run", "--egress-network", internet.network_name, "--dns-upstream",
                        internet.ip, "--decision-service", service.url, "--decision-token-file",
                        str(service.token), "--label", f"team={team}", "--ask-timeout", "150",
                        "--image", "python", "-v", f"{PROBE}:/probe.py:ro",
                        "-e", "PROBE_TIMEOUT=140", "--",
                        "python3", "/probe.py", f"http:http://{host}/fleet"),
            env={**os.environ, "CODERUN_HOME": str(home)}, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True,
        ))  # fmt: skip
    tmux = None
    try:
        wait_for(lambda: sorted(fleet_pending(service).values()) == [1, 1],
                 "both sessions' flows held at the service", 120)  # fmt: skip
        dashboard = coderun_cmd("dashboard", "--server", service.url, "--token-file",
                                str(service.token))  # fmt: skip
        tmux = Tmux(f"env CODERUN_HOME={home} {' '.join(dashboard)}", width=140)
        screen = tmux.wait_row("alpha.example.test")
        assert "team=a" in screen or "team=b" in screen, screen  # sessions shown with labels
        tmux.keys("a")  # allow once, the first row
        wait_for(lambda: sum(fleet_pending(service).values()) == 1, "one decided", 60)
        tmux.wait_row("example.test")
        tmux.keys("a")
        outs = [run.communicate(timeout=150) for run in runs]
    finally:
        if tmux is not None:
            tmux.kill()
        for run in runs:
            if run.poll() is None:
                run.kill()
                run.wait()
    for (out, err), run in zip(outs, runs, strict=True):
        (result,) = steps(out.splitlines())
        assert result["ok"], (out, err)
        assert run.returncode == 0, err
    assert wait_for(lambda: not leftovers(client), "no leftovers", 60)
