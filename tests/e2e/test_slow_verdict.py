"""A verdict slower than the SYN's retransmission: the flow is still logged once (the
load tests' invariant, hole 6 in docs/security.md)."""

from __future__ import annotations

from pathlib import Path

import docker
import pytest

from sandbox.internet import DemoInternet
from snitch.core.logentry import EntryKind
from snitch.core.logfile import read_log
from tests.e2e.conftest import pause, queued, wait_for
from tests.e2e.loadkit import results

pytestmark = pytest.mark.docker


SLOW = r"""
import json, os, socket, sys, time
while not os.path.exists("/tmp/coderun-go"):
    time.sleep(0.02)
start = time.monotonic()
with socket.create_connection((sys.argv[1], 80), timeout=30) as s:
    s.sendall(b"GET /slow-verdict HTTP/1.0\r\nHost: api.example.test\r\n\r\n")
    ok = s.recv(12).startswith(b"HTTP/1.1 200")
print(json.dumps({"ok": ok, "seconds": time.monotonic() - start}), flush=True)
"""


def test_slow_verdict_logs_a_flow_once(
    home: Path,
    internet: DemoInternet,
    tags: dict[str, str],
    tmp_path: Path,
    client: docker.DockerClient,
) -> None:
    from sandbox.config import SessionConfig
    from sandbox.session import Session
    from snitch.core.model import Mode
    from snitch.core.settings import NetworkShape, RunSettings

    script, policy = tmp_path / "slow.py", tmp_path / "slow.toml"
    script.write_text(SLOW)
    policy.write_text(f'[[rule]]\naction = "allow"\ncidr = "{internet.ip}/32"\n')
    session = Session(
        client,
        SessionConfig(
            image=tags["sandbox-bash"],
            network=NetworkShape(
                gateway_image=tags["gateway"],
                egress_network=internet.network_name,
                dns_upstream=internet.ip,
            ),
            run=RunSettings(command=("python3", "/slow.py", internet.ip), mode=Mode.ENFORCE),
            policy_file=policy,
            volumes=[f"{script}:/slow.py:ro"],
        ),  # fmt: skip
    )
    try:
        session.start()
        assert session.sandbox is not None and session.gateway is not None
        session.sandbox.start()
        pause(session.gateway)  # a slow handler: the first SYN waits in the queue ...
        session.sandbox.exec_run(["touch", "/tmp/coderun-go"])
        # ... until the sandbox retransmits it (after its 1 s RTO): two copies queued.
        wait_for(lambda: queued(session.gateway) >= 2, "the SYN and its retransmission")
        session.gateway.unpause()
        session.sandbox.wait(timeout=60)
        out = results(session.sandbox.logs(stdout=True, stderr=False).decode())
    finally:
        session.close()
    assert out and out[0]["ok"], out  # control: the connection was allowed and worked
    flows = [
        e
        for e in read_log(session.log_path)
        if e.kind is EntryKind.FLOW and e.dst == internet.ip and e.dport == 80
    ]
    assert len(flows) == 1, [(e.sport, e.verdict, e.time) for e in flows]
