"""A flood of queued SYNs does not stop the gateway's DNS forwarder answering.

The forwarder and the verdicts share the gateway's event loop. The sandbox queues a
thousand SYNs to a denied address while the gateway is paused, then asks the gateway's
resolver for an allowed name; once the gateway runs again, the answer must go out
while the flood is still being judged, not after the last of it (the escape arena's
flood test saw the allowed request's lookup time out on a loaded machine).
"""

from __future__ import annotations

from pathlib import Path

import docker
import pytest

from sandbox.config import SessionConfig
from sandbox.internet import DemoInternet
from sandbox.session import Session
from snitch.core.logentry import EntryKind
from snitch.core.logfile import read_log
from snitch.core.model import Mode
from snitch.core.settings import NetworkShape, RunSettings
from tests.e2e.conftest import pause, queued, wait_for
from tests.e2e.loadkit import results

pytestmark = pytest.mark.docker

FLOOD = 1000
FIRST_PORT = 20000

FLOOD_THEN_LOOKUP = r"""
import json, os, select, socket, struct, sys, time
evil, n, first = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
gateway = next(l.split()[1] for l in open("/etc/resolv.conf") if l.startswith("nameserver"))
while not os.path.exists("/tmp/coderun-go"):
    time.sleep(0.02)
socks = []
for i in range(n):  # SYNs to a denied address, each a flow of its own (its port)
    s = socket.socket()
    s.setblocking(False)
    try:
        s.connect((evil, first + i))
    except BlockingIOError:
        pass
    socks.append(s)
query = struct.pack("!HHHHHH", 7, 0x0100, 1, 0, 0, 0)
query += b"\x03api\x07example\x04test\x00" + struct.pack("!HH", 1, 1)
dns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
dns.settimeout(120)
dns.sendto(query, (gateway, 53))
open("/tmp/coderun-asked", "w").close()
reply = dns.recv(512)
out = {"rcode": reply[3] & 15, "answers": struct.unpack("!H", reply[6:8])[0]}
poller = select.poll()  # every connection's outcome (bounded): the flood was judged
for s in socks:
    poller.register(s, select.POLLOUT)
pending, deadline = n, time.monotonic() + 120
while pending and time.monotonic() < deadline:
    for fd, _ in poller.poll(500):
        poller.unregister(fd)
        pending -= 1
out["refused"] = sum(s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 111 for s in socks)
print(json.dumps(out), flush=True)
"""

POLICY = """
[[rule]]
action = "allow"
host = "api.example.test"
port = 80
proto = "tcp"
"""


def test_lookup_is_answered_while_a_flood_is_judged(
    home: Path,
    internet: DemoInternet,
    tags: dict[str, str],
    tmp_path: Path,
    client: docker.DockerClient,
) -> None:
    script, policy = tmp_path / "flood.py", tmp_path / "flood.toml"
    script.write_text(FLOOD_THEN_LOOKUP)
    policy.write_text(POLICY)
    evil = internet.hosts["evil.example.test"]
    session = Session(
        client,
        SessionConfig(
            image=tags["sandbox-bash"],
            network=NetworkShape(gateway_image=tags["gateway"],
                                 egress_network=internet.network_name,
                                 dns_upstream=internet.ip),
            run=RunSettings(command=("python3", "/flood.py", evil, str(FLOOD), str(FIRST_PORT)),
                            mode=Mode.ENFORCE),
            policy_file=policy,
            volumes=[f"{script}:/flood.py:ro"],
        ),
    )  # fmt: skip
    try:
        session.start()
        sandbox, gateway = session.sandbox, session.gateway
        assert sandbox is not None and gateway is not None
        sandbox.start()
        pause(gateway)  # the flood and the lookup wait for the gateway together
        sandbox.exec_run(["touch", "/tmp/coderun-go"])
        wait_for(lambda: queued(gateway) >= FLOOD, f"{FLOOD} SYNs in the gateway's queue", 120)
        wait_for(lambda: sandbox.exec_run(["test", "-e", "/tmp/coderun-asked"]).exit_code == 0,
                 "the lookup sent", 60)  # fmt: skip
        gateway.unpause()
        sandbox.wait(timeout=300)
        out = results(sandbox.logs(stdout=True, stderr=False).decode())
    finally:
        session.close()
    assert out and out[0]["rcode"] == 0 and out[0]["answers"] >= 1, out
    assert out[0]["refused"] == FLOOD, out  # control: every SYN of the flood was refused
    log = list(read_log(session.log_path))
    lookup = [e for e in log if e.kind is EntryKind.DNS and e.qname == "api.example.test"]
    assert len(lookup) == 1 and lookup[0].answers, lookup
    flood = [e.time for e in log if e.kind is EntryKind.FLOW and e.dst == evil
             and e.dport >= FIRST_PORT and e.verdict == "deny"]  # fmt: skip
    assert len(flood) == FLOOD, len(flood)  # control: each judged by the gateway, logged once
    # The answer went out (its log line is written as it goes) while most of the flood
    # still waited for its verdict.
    before = sum(1 for t in flood if t < lookup[0].time)
    assert before < FLOOD // 2, f"{before} of {FLOOD} SYNs judged before the lookup's answer"
