"""mitmproxy runs in a worker process of the gateway (snitch/gateway/mitmproc.py). When
it dies mid-run, web connections through the proxy fail from then on (nothing listens
on the proxy port: fail closed), nothing reaches the server, the gateway logs it and
no longer reports mitmproxy, and the run still ends and is cleaned up."""

from __future__ import annotations

import os
import signal
import subprocess
import uuid
from pathlib import Path

import docker
import pytest
from docker.models.containers import Container

from sandbox.internet import DemoInternet
from snitch.core.logfile import read_log
from snitch.core.session_dir import SessionDir
from tests.e2e.conftest import coderun_cmd, wait_for
from tests.escape.helpers import objects_of

pytestmark = pytest.mark.docker

EXITED = "mitmproxy worker exited"
POLICY = '[[rule]]\naction = "allow"\nhost = "api.example.test"\n'


def workload(nonce: str) -> str:
    curl = "curl -sS -o /dev/null -w 'status=%{http_code}\\n' --max-time 10"
    return (
        f"{curl} http://api.example.test/mw-{nonce}-before; "
        "while [ ! -e /sig/go ]; do sleep 0.05; done; "  # the worker is dead by then
        f"{curl} http://api.example.test/mw-{nonce}-after; echo after=$?"
    )


def gateway_of(client: docker.DockerClient, session: str) -> Container:
    found = client.containers.list(
        filters={"label": [f"coderun.session={session}", "coderun.role=gateway"]}
    )
    assert len(found) == 1, found
    return found[0]


def kill_worker(gateway: Container) -> None:
    """SIGKILL the gateway's mitmproxy worker, found in its container's process list."""
    rows = gateway.top()["Processes"]
    pids = [int(row[1]) for row in rows if "snitch.gateway.mitmworker" in row[-1]]
    assert len(pids) == 1, rows
    os.kill(pids[0], signal.SIGKILL)


def session_log(folder: Path) -> list[str]:
    path = folder / "flows.jsonl"
    return [e.message for e in read_log(path)] if path.exists() else []


def test_a_dead_worker_lets_nothing_through_the_proxy(
    client: docker.DockerClient,
    home: Path,
    internet: DemoInternet,
    tmp_path: Path,
) -> None:
    nonce = uuid.uuid4().hex[:8]
    policy = tmp_path / "policy.toml"
    policy.write_text(POLICY)
    sig = tmp_path / "sig"
    sig.mkdir()
    env = dict(os.environ, CODERUN_PEEK="0")  # every web flow through mitmproxy
    cmd = coderun_cmd("run", "--mode", "enforce", "--policy", str(policy),
                      "--egress-network", internet.network_name, "--dns-upstream",
                      internet.ip, "-v", f"{sig}:/sig:ro", "--", "sh", "-c",
                      workload(nonce))  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env)  # fmt: skip
    try:
        wait_for(lambda: f"/mw-{nonce}-before " in internet.logs(), "the first request", 120)
        folder = next((home / "sessions").iterdir())
        kill_worker(gateway_of(client, folder.name))
        wait_for(lambda: any(m.startswith(EXITED) for m in session_log(folder)),
                 "the gateway to log the worker's end", 30)  # fmt: skip
        status = SessionDir.of(home / "sessions", folder.name).gateway_status()
        assert status is not None and status.mitm is False, status
        (sig / "go").touch()
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    lines = out.splitlines()
    assert "status=200" in lines, out  # before: through the worker
    assert "status=000" in lines and "after=0" not in lines, out  # after: refused
    assert f"/mw-{nonce}-after" not in internet.logs()
    assert objects_of(client, [folder.name]) == []  # cleaned up as ever
