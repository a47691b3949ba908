"""Issue 18: decided destinations at kernel speed (snitch/gateway/kernelcache.py), for real.

- Flows to a destination a rule decided are decided by the kernel's map, and every one
  of them is still logged; a rule change reaches the kernel at once.
- The map is the gateway process's: it dies with it (``flags owner``), and a sandbox
  whose flows the kernel was deciding has no network once the gateway is gone.
"""

from __future__ import annotations

import json
import textwrap
import time
from pathlib import Path

import docker
import pytest

from sandbox import paths
from sandbox.config import SessionConfig
from sandbox.gateway_code import gateway_volumes
from sandbox.internet import DemoInternet
from sandbox.session import Session
from snitch.core.logentry import EntryKind
from snitch.core.model import Action, Mode, Rule
from snitch.core.settings import KERNEL_CACHE_ENV, NetworkShape, RunSettings
from snitch.core.store import RuleStore
from tests.e2e.conftest import latest_log, leftovers, wait_for
from tests.e2e.probeloop import CliRun, Events, arrived, kill_process_tree, mine

pytestmark = pytest.mark.docker

LOOP = r"""
import json, socket, sys, time
host, port = sys.argv[1], int(sys.argv[2])
while True:
    start = time.monotonic()
    s = socket.socket()
    s.settimeout(1)
    try:
        s.connect((host, port))
        out = {"t": start, "ok": True, "sport": s.getsockname()[1]}
    except OSError as exc:
        out = {"t": start, "ok": False, "error": repr(exc)}
    s.close()
    print(json.dumps(out), flush=True)
    time.sleep(0.02)
"""


def kernel_map(session: Session) -> str:
    assert session.gateway is not None
    code, out = session.gateway.exec_run(["nft", "list", "map", "ip", "coderun_cache", "verdicts"])
    assert code == 0, out
    return bytes(out).decode()


@pytest.fixture(autouse=True)
def kernel_cache_on(monkeypatch: pytest.MonkeyPatch) -> None:
    """The cache is on by default: these runs (in-process sessions and `coderun run`) have
    no switch in their environment."""
    monkeypatch.delenv(KERNEL_CACHE_ENV, raising=False)


def test_decided_flows_go_by_the_kernel_all_logged_until_a_rule_changes(
    home: Path,
    internet: DemoInternet,
    tags: dict[str, str],
    client: docker.DockerClient,
    tmp_path: Path,
) -> None:
    script = tmp_path / "loop.py"
    script.write_text(LOOP)
    policy = tmp_path / "policy.toml"
    policy.write_text(f'[[rule]]\naction = "allow"\ncidr = "{internet.ip}/32"\nport = 80\n')
    config = SessionConfig(
        image=tags["sandbox-bash"],
        network=NetworkShape(gateway_image=tags["gateway"], egress_network=internet.network_name,
                             dns_upstream=internet.ip, web_ports=(), tls_ports=()),
        run=RunSettings(command=("python3", "/loop.py", internet.ip, "80"), mode=Mode.ENFORCE),
        policy_file=policy,
        volumes=[f"{script}:/loop.py:ro"],
    )  # fmt: skip
    session = Session(client, config)

    def results() -> list[dict[str, object]]:
        assert session.sandbox is not None
        lines = session.sandbox.logs(stdout=True, stderr=False).decode().splitlines()
        return [json.loads(line) for line in lines if line.startswith("{")]

    try:
        session.start()
        assert session.sandbox is not None
        session.sandbox.start()
        wait_for(lambda: sum(1 for r in results() if r["ok"]) >= 40, "40 connections", 60)
        assert f"{internet.ip} . tcp . 80" in kernel_map(session)  # the kernel decides them
        RuleStore(paths.rules_db()).add(Rule(Action.DENY, cidr=f"{internet.ip}/32", port_lo=80,
                                             port_hi=80))  # fmt: skip
        changed = time.monotonic()
        settled = changed + 1.0  # the rule book looks at the store every 0.25 s
        wait_for(lambda: len([r for r in results() if float(r["t"]) > settled]) >= 10,  # type: ignore[arg-type]
                 "attempts after the rule change")  # fmt: skip
        after = [r for r in results() if float(r["t"]) > settled]  # type: ignore[arg-type]
        assert [r for r in after if r["ok"]] == []
        final = results()
    finally:
        session.close()
    ok = [r for r in final if r["ok"]]
    log = latest_log(home)
    allowed = [
        e for e in log if e.kind is EntryKind.FLOW and e.verdict == "allow" and e.dport == 80
    ]
    denied = [e for e in log if e.kind is EntryKind.FLOW and e.verdict == "deny" and e.dport == 80]
    # Every connection that got through has its own line, with the rule that allowed it.
    assert {int(r["sport"]) for r in ok} <= {e.sport for e in allowed}  # type: ignore[call-overload]
    assert len(allowed) >= len(ok) and all(e.rule_id is not None for e in allowed)
    assert len(denied) >= len(after) - 1  # (the last attempt may have been cut short)
    [stats] = [e.message for e in log if "kernel verdict cache" in (e.message or "")]
    in_kernel = int(stats.split(", ")[1].split()[0])
    assert in_kernel >= len(ok) // 2, stats  # most of them never reached the queue
    assert mine(client, home) == [] and not leftovers(client)


def test_the_map_dies_with_the_gateway_process(
    tags: dict[str, str], client: docker.DockerClient
) -> None:
    """``flags owner``: the kernel removes the table when its process dies (SIGKILL)."""
    script = textwrap.dedent("""
        import os, signal, subprocess, time
        from snitch.core.model import Action, Decision, FlowKey, Proto
        from snitch.gateway.kernelcache import Entry, KernelCache, LibNftables

        def tables():
            return subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout

        pid = os.fork()
        if pid == 0:
            cache = KernelCache(LibNftables(), "eth0")
            cache.install()
            cache.add(FlowKey(Proto.TCP, "10.0.0.2", 1, "192.0.2.1", 80),
                      Entry(Decision(Action.ALLOW), "", (), 0), time.time() + 60)
            print("BEFORE", tables().strip(), flush=True)
            print(subprocess.run(["nft", "list", "map", "ip", "coderun_cache", "verdicts"],
                                 capture_output=True, text=True).stdout, flush=True)
            os.kill(os.getpid(), signal.SIGKILL)
        os.waitpid(pid, 0)
        print("AFTER", tables().strip(), flush=True)
    """)
    container = client.containers.run(
        tags["gateway"], entrypoint=["python3", "-c", script], detach=True, network_mode="none",
        cap_add=["NET_ADMIN"], volumes=gateway_volumes(), labels={"coderun.role": "test"},
    )  # fmt: skip
    try:
        assert container.wait(timeout=60)["StatusCode"] == 0
        out = bytes(container.logs()).decode()
    finally:
        container.remove(force=True)
    before, after = out.split("AFTER")
    assert "table ip coderun_cache" in before and "192.0.2.1 . tcp . 80" in before, out
    assert "coderun_cache" not in after, out


@pytest.mark.parametrize("how", ["process-tree", "kill"])
def test_killing_the_gateway_with_cached_verdicts_leaves_no_network(
    home: Path,
    internet: DemoInternet,
    client: docker.DockerClient,
    tmp_path: Path,
    how: str,
) -> None:
    run = CliRun(home, internet, tmp_path, extra=("--web-ports", ""))
    try:
        wait_for(lambda: run.loop.successes() >= 20, "the loop's first connections", timeout=60)
        gateway = run.gateway(client)
        code, out = gateway.exec_run(["nft", "list", "map", "ip", "coderun_cache", "verdicts"])
        assert code == 0 and f"{internet.ip} . tcp . 80" in out.decode(), out  # cached
        events = Events(client, gateway)
        try:
            kill_process_tree(gateway) if how == "process-tree" else gateway.kill()
            gone_at = events.at("die")
        finally:
            events.close()
        status = run.finish()
    finally:
        run.kill()
    after = run.loop.started_after(gone_at)
    assert after, "the loop made no attempt after the gateway was gone (vacuous)"
    assert [s for s in after if run.loop.outcomes.get(s, {}).get("ok")] == []
    assert [s for s in arrived(internet, run.nonce) if run.loop.starts.get(s, 0) >= gone_at] == []
    assert status == 125, run.stderr
    assert mine(client, run.home) == []
