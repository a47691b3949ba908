"""``coderun pool``: warm sessions are claimed by runs, judged by each run's own settings,
never reused, and removed by ``pool stop`` (or by ``gc`` when the daemon dies)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from sandbox.internet import DemoInternet
from snitch.core.logentry import EntryKind, LogEntry
from snitch.core.logfile import read_log
from tests.e2e.conftest import coderun_cmd, leftovers, wait_for

PROBE = Path(__file__).with_name("probe.py")
POLICY = """
[[rule]]
action = "allow"
host = "api.example.test"
"""


def cli(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(coderun_cmd(*args), capture_output=True, text=True, timeout=timeout)


def pool_files(home: Path, state: str) -> list[str]:
    found = (home / "pool").glob(f"*.{state}") if (home / "pool").is_dir() else []
    return sorted(p.name.split(".")[0] for p in found)


def run_probe(internet: DemoInternet, *args: str) -> tuple[subprocess.CompletedProcess[str], str]:
    """A probe run against the demo internet; returns the process and its session id."""
    proc = cli("run", "--egress-network", internet.network_name, "--dns-upstream", internet.ip,
               *args, "-v", f"{PROBE}:/probe.py:ro", "--", "python3", "/probe.py",
               "http:http://api.example.test/pooled", "connect:evil.example.test:80")  # fmt: skip
    sessions = json.loads(cli("sessions", "--json").stdout.splitlines()[-1])
    return proc, str(sessions["id"])


def oks(stdout: str) -> dict[str, bool]:
    lines = [json.loads(x) for x in stdout.splitlines() if x.startswith("{")]
    return {str(x["step"]): bool(x["ok"]) for x in lines}


def objects_of(client: docker.DockerClient, sessions: list[str]) -> list[str]:
    """Containers, networks and volumes of these sessions that still exist."""
    found = []
    for sid in sessions:
        selector = {"label": f"coderun.session={sid}"}
        found += [f"container {c.name}" for c in client.containers.list(all=True, filters=selector)]
        found += [f"network {n.name}" for n in client.networks.list(filters=selector)]
        found += [f"volume {v.name}" for v in client.volumes.list(filters=selector)]
    return found


def session_log(home: Path, session: str) -> list[LogEntry]:
    return list(read_log(home / "sessions" / session / "flows.jsonl"))


@pytest.fixture()
def pool(home: Path, internet: DemoInternet) -> Iterator[Path]:
    started = cli("pool", "start", "--egress-network", internet.network_name,
                  "--dns-upstream", internet.ip)  # fmt: skip
    assert started.returncode == 0, started.stderr + started.stdout
    try:
        yield home
    finally:
        cli("pool", "stop")


def test_a_run_claims_a_warm_session_with_its_own_settings(
    pool: Path, internet: DemoInternet, client: docker.DockerClient, tmp_path: Path
) -> None:
    warm = pool_files(pool, "ready")
    assert len(warm) == 1
    policy = tmp_path / "policy.toml"
    policy.write_text(POLICY)
    proc, session = run_probe(internet, "--mode", "enforce", "--policy", str(policy))
    assert proc.returncode == 0, proc.stderr
    assert session == warm[0]  # the warm pair was used
    got = oks(proc.stdout)
    assert got["http:http://api.example.test/pooled"], proc.stdout
    assert not got["connect:evil.example.test:80"], proc.stdout
    log = session_log(pool, session)
    assert any(e.kind is EntryKind.HTTP and e.url.endswith("/pooled") for e in log)  # mitmproxy
    assert any(e.kind is EntryKind.DNS and e.qname == "evil.example.test"
               and e.verdict == "deny" for e in log)  # fmt: skip
    assert any(e.message.startswith("gateway ready: mode=enforce") for e in log)
    # The used pair is removed, a new one is warmed; nothing is used twice.
    wait_for(lambda: len(pool_files(pool, "ready")) == 1 and not pool_files(pool, "done"),
             "the pool to refill")  # fmt: skip
    again = pool_files(pool, "ready")[0]
    assert again != session
    assert objects_of(client, [session]) == []

    # The next run's settings are its own: audit mode lets the unlisted name through.
    proc, second = run_probe(internet, "--mode", "audit")
    assert proc.returncode == 0, proc.stderr
    assert second == again
    assert all(oks(proc.stdout).values()), proc.stdout
    assert any(e.message.startswith("gateway ready: mode=audit") for e in session_log(pool, second))

    # Ask mode on a warm gateway: the held name expires into a denial, nobody asked.
    wait_for(lambda: pool_files(pool, "ready") and not pool_files(pool, "done"), "a refill")
    third = pool_files(pool, "ready")[0]
    proc, sid = run_probe(internet, "--mode", "ask", "--prompt", "none", "--ask-timeout", "2")
    assert proc.returncode == 0 and sid == third, proc.stderr
    assert not any(oks(proc.stdout).values()), proc.stdout
    held = [e for e in session_log(pool, sid) if e.kind is EntryKind.FLOW
            and "evil.example.test" in e.names]  # fmt: skip
    assert held and all("expired" in e.reason and e.verdict == "deny" for e in held), held


def test_pool_stop_and_gc_leave_nothing(
    home: Path, internet: DemoInternet, client: docker.DockerClient
) -> None:
    try:
        stop_and_gc(home, internet, client)
    finally:
        cli("pool", "stop")


def stop_and_gc(home: Path, internet: DemoInternet, client: docker.DockerClient) -> None:
    started = cli("pool", "start", "--size", "2", "--egress-network", internet.network_name,
                  "--dns-upstream", internet.ip)  # fmt: skip
    assert started.returncode == 0, started.stderr + started.stdout
    warm = pool_files(home, "ready")
    assert len(warm) == 2
    assert len(objects_of(client, warm)) == 2 * 4  # gateway, holder, sandbox network, files
    # Pairs removed under the daemon (`gc --all`, a crash) are noticed and replaced.
    for sid in warm:
        for c in client.containers.list(all=True, filters={"label": f"coderun.session={sid}"}):
            c.remove(force=True)
    wait_for(lambda: len(pool_files(home, "ready")) == 2
             and not set(pool_files(home, "ready")) & set(warm), "new pairs", 90)  # fmt: skip
    assert objects_of(client, warm) == []
    warm = pool_files(home, "ready")
    assert cli("pool", "stop").returncode == 0
    assert objects_of(client, warm) == [] and pool_files(home, "ready") == []
    assert not any((home / "sessions" / sid).exists() for sid in warm)  # never used
    assert "no pool running" in cli("pool", "status").stdout

    # A daemon that dies leaves orphans that `coderun gc` removes.
    started = cli("pool", "start", "--egress-network", internet.network_name,
                  "--dns-upstream", internet.ip)  # fmt: skip
    assert started.returncode == 0, started.stderr
    warm = pool_files(home, "ready")
    daemon = json.loads((home / "pool" / "daemon.json").read_text())
    os.kill(int(daemon["pid"]), signal.SIGKILL)
    wait_for(lambda: "no pool running" in cli("pool", "status").stdout, "the daemon to die")
    assert len(objects_of(client, warm)) == 4
    assert cli("gc").returncode == 0
    assert objects_of(client, warm) == [] and leftovers(client) == []
