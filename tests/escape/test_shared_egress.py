"""Runs share one egress network (sandbox/egress.py): one run's sandbox must not reach
another run's gateway there, even with a rule that allows every address.

Session B (in-process) stands with its gateway on ``coderun-egress``; in B's gateway a
TCP listener on every address stands in for any service bound there, besides its real
DNS and proxy ports (its control API is a unix socket: no port at all). Run A (``coderun
run``, default egress, an allow-all CIDR rule) connects from its sandbox to B's gateway's
egress address on each, and to a container of ours on the same network (positive
control: the path and the rule work). Without the gateway's INPUT rules on its egress
interface the listener would accept A's connection: this test fails then.
"""

from __future__ import annotations

import json
import random
import subprocess
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
from docker.models.containers import Container

from sandbox.cleanup import remove_session
from sandbox.config import SessionConfig
from sandbox.egress import NAME
from sandbox.internet import DemoInternet
from sandbox.session import Session
from snitch.core.model import Mode
from snitch.core.settings import NetworkShape, RunSettings
from snitch.gateway.mitm import PROXY_PORT
from tests.e2e.conftest import coderun_cmd, wait_for
from tests.escape.helpers import container_ip, helper_labels, new_ident

pytestmark = pytest.mark.docker

ALLOW_ALL = """
[[rule]]
action = "allow"
cidr = "0.0.0.0/0"
note = "every address: the isolation must not depend on rules"
"""
LISTEN = (
    "import socket,sys; s=socket.socket(); s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1);"
    "s.bind(('0.0.0.0',int(sys.argv[1]))); s.listen(8); print('LISTENING',flush=True)\n"
    "while True:\n c,a=s.accept(); print('ACCEPTED',a[0],flush=True); c.close()"
)
PROBE = r"""
import json, socket, sys
out = {}
for name, host, port in json.loads(sys.argv[1]):
    try:
        socket.create_connection((host, port), timeout=3).close()
        out[name] = "connected"
    except OSError as exc:
        out[name] = type(exc).__name__
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.settimeout(3)
query = bytes.fromhex("abcd01000001000000000000")
query += b"\x03api\x07example\x04test\x00\x00\x01\x00\x01"
u.sendto(query, (sys.argv[2], 53))
try:
    u.recvfrom(512)
    out["udp dns"] = "answered"
except OSError as exc:
    out["udp dns"] = type(exc).__name__
print("PROBE " + json.dumps(out), flush=True)
"""


@pytest.fixture()
def session_b(
    client: docker.DockerClient, tags: dict[str, str], internet: DemoInternet, home: Path
) -> Iterator[Session]:
    config = SessionConfig(
        image=tags["sandbox-bash"],
        network=NetworkShape(gateway_image=tags["gateway"], dns_upstream=internet.ip),
        run=RunSettings(command=("true",), mode=Mode.ENFORCE),
    )
    session = Session(client, config)
    try:
        session.start()
        yield session
    finally:
        session.close()


@pytest.fixture()
def control(
    client: docker.DockerClient, tags: dict[str, str], session_b: Session
) -> Iterator[Container]:
    """A listener of ours on the shared network (the positive control's target)."""
    ident = new_ident("egress-control")
    port = random.randrange(20000, 60000)
    container = client.containers.run(
        tags["sandbox-bash"], ["python3", "-c", LISTEN, str(port)], detach=True,
        network=NAME, labels={**helper_labels(ident, "control"), "port": str(port)},
    )  # fmt: skip
    try:
        wait_for(lambda: b"LISTENING" in container.logs(), "the control listener")
        yield container
    finally:
        remove_session(client, ident)


def test_a_sandbox_cannot_reach_another_runs_gateway_on_the_shared_egress_network(
    client: docker.DockerClient,
    internet: DemoInternet,
    session_b: Session,
    control: Container,
    home: Path,
    tmp_path: Path,
) -> None:
    gateway = session_b.gateway
    assert gateway is not None
    b_address = container_ip(gateway, NAME)
    port = int(control.labels["port"])
    # A service of B's gateway bound to every address (it answers on its own loopback).
    log = "/tmp/coderun-egress-probe.log"
    gateway.exec_run(["sh", "-c", f'python3 -c "$LISTEN" {port} >{log} 2>&1'],
                     environment={"LISTEN": LISTEN}, detach=True)  # fmt: skip
    check = f"import socket; socket.create_connection(('127.0.0.1', {port}), timeout=2)"
    wait_for(lambda: gateway.exec_run(["python3", "-c", check]).exit_code == 0,
             "the listener in B's gateway")  # fmt: skip
    targets = [
        ("control", container_ip(control, NAME), port),
        ("B listener", b_address, port),
        ("B dns tcp", b_address, 53),
        ("B proxy", b_address, PROXY_PORT),
    ]
    policy = tmp_path / "allow-all.toml"
    policy.write_text(ALLOW_ALL)
    proc = subprocess.run(
        coderun_cmd("run", "--mode", "enforce", "--policy", str(policy),
                    "--dns-upstream", internet.ip, "--", "python3", "-c", PROBE,
                    json.dumps(targets), b_address),
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    line = next(x for x in proc.stdout.splitlines() if x.startswith("PROBE "))
    result = json.loads(line.removeprefix("PROBE "))
    assert result["control"] == "connected", result  # the rule and the path work
    for name in ("B listener", "B dns tcp", "B proxy"):
        assert result[name] != "connected", result
    assert result["udp dns"] != "answered", result
    seen = gateway.exec_run(["cat", log]).output.decode().splitlines()
    assert [x for x in seen if x.startswith("ACCEPTED") and "127.0.0.1" not in x] == []
