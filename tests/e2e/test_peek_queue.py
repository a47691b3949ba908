"""A web connection read in passing costs one trip to the gateway's process: its request
head. The handshake's last ACK (empty) is accepted in the kernel (netfilter.py,
``CODERUN_EMPTY``), and nothing after the head is queued. Counted from the gateway's own
netfilter counters during a real run of plain-HTTP requests, each on a new connection.
"""

from __future__ import annotations

import signal
from pathlib import Path

import docker
import pytest

from sandbox.internet import DemoInternet
from tests.e2e.conftest import latest_log, leftovers, wait_for
from tests.e2e.test_ask_mode import LiveRun

pytestmark = pytest.mark.docker

REQUESTS = 30


def packets(text: str, *words: str) -> int:
    """Packets counted by the rules of ``iptables -vnxL`` output whose line has all ``words``."""
    total = 0
    for line in text.splitlines():
        fields = line.split()
        if fields and fields[0].isdigit() and all(word in line for word in words):
            total += int(fields[0])
    return total


DENY_NAMED = '\n[[rule]]\naction = "deny"\nhost = "evil.example.test"\n'


@pytest.mark.parametrize("deny_named", [True, False], ids=["a deny names a host", "none does"])
def test_a_connection_read_in_passing_is_queued_once_or_not_at_all(
    home: Path, internet: DemoInternet, tags: dict[str, str], tmp_path: Path,
    client: docker.DockerClient, deny_named: bool,
) -> None:  # fmt: skip
    """While a deny rule names a host, each plain-HTTP head is held until read (one
    queue trip: the empty ACK stays in the kernel); while none does, nothing could refuse
    a head: once the kernel cache decides the destination (enforce mode, used twice), its
    connections' heads are copied to NFLOG, never held, and logged all the same."""
    policy = tmp_path / "policy.toml"
    policy.write_text(f'[[rule]]\naction = "allow"\ncidr = "{internet.ip}"\n'
                      + (DENY_NAMED if deny_named else ""))  # fmt: skip
    loop = (f"for i in $(seq 1 {REQUESTS}); do curl -s -o /dev/null http://{internet.ip}/q$i "
            "|| echo failed; done; echo done; sleep 120")  # fmt: skip
    run = LiveRun(home, internet, "--mode", "enforce", "--policy", str(policy), "--",
                  "sh", "-c", loop)  # fmt: skip
    try:
        assert run.proc.stdout is not None
        assert run.proc.stdout.readline().strip() == "done"
        gateway = run.container("gateway")
        queue = gateway.exec_run("iptables -t mangle -vnxL CODERUN_QUEUE").output.decode()
    finally:
        run.proc.send_signal(signal.SIGINT)  # Ctrl-C: the run removes its session
        try:
            run.proc.wait(timeout=60)
        finally:
            run.kill()
    if deny_named:  # each connection: its empty ACK accepted in the kernel, its head queued
        assert packets(queue, "CODERUN_EMPTY") >= REQUESTS, queue
        assert REQUESTS <= packets(queue, "NFQUEUE num 1") <= REQUESTS + 2, queue
    else:  # the two connections the gateway decided itself (then the kernel cache did)
        assert 2 <= packets(queue, "NFQUEUE num 1") <= 4, queue
    urls = [e.url for e in latest_log(home) if e.kind == "http"]
    for i in range(1, REQUESTS + 1):
        assert f"http://{internet.ip}/q{i}" in urls, (i, urls)
    wait_for(lambda: leftovers(client) == [], "the session to be removed", timeout=30)
