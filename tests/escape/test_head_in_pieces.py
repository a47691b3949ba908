"""A plain-HTTP request read in passing (snitch/gateway/peeker.py) cannot hide the Host a
deny rule names by how it sends its head: its first segment a byte long, empty lines
before the request line, a tab for a space, or a header at a time until the peeker
would stop reading, or a new connection from the same port just after one with an
allowed Host (the same 5-tuple, sequence numbers close by). Each variant is sent from a
real sandbox, with TCP_NODELAY so that each write is its own segment, to an address an
allow rule lets through; the control requests (an allowed Host) arrive, none of the
others does.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from sandbox.internet import DemoInternet
from snitch.gateway.peeker import MAX_PACKETS
from tests.e2e.conftest import Result
from tests.escape.test_approver_flows import FRONTING

pytestmark = pytest.mark.docker

SENDER = """
import os, socket, struct, sys, time
ip, nonce, trickle = sys.argv[1], sys.argv[2], int(sys.argv[3])
def head(host, path):
    line = f"GET /{path}-{nonce} HTTP/1.1\\r\\nHost: {host}\\r\\n"
    return (line + "Connection: close\\r\\n\\r\\n").encode()
evil = "evil.example.test"
cases = {
    "control": [head("api.example.test", "control")],
    "onebyte": [head(evil, "onebyte")[:1], head(evil, "onebyte")[1:]],
    "method": [head(evil, "method")[:2], head(evil, "method")[2:]],
    "emptyline": [b"\\r\\n", head(evil, "emptyline")],
    "tab": [head(evil, "tab").replace(b"GET ", b"GET\\t", 1)],
    "trickle": [f"GET /trickle-{nonce} HTTP/1.1\\r\\n".encode()]
               + [b"X-Pad: %d\\r\\n" % i for i in range(trickle)]
               + [f"Host: {evil}\\r\\n\\r\\n".encode()],
}
def exchange(name, s, parts, port=0):
    # parts sent on s (from port when given); the answer's first line printed
    answer = b""
    try:
        if port:
            s.bind(("", port))
        s.connect((ip, 80))
        for part in parts:
            s.sendall(part)
            time.sleep(0.05)  # shapes the segments (one write each), no waiting on anything
        while chunk := s.recv(4096):
            answer += chunk
    except OSError as exc:
        answer = repr(exc).encode()
    print(name, answer.split(b"\\r\\n", 1)[0].decode(errors="replace"), flush=True)
    s.close()
def fresh():
    s = socket.socket()
    s.settimeout(10)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s
for name, parts in cases.items():
    exchange(name, fresh(), parts)
# A new connection from the same port at once (the same 5-tuple): its sequence numbers
# start close to the last one's, which had an allowed head.
port = 20000 + os.getpid() % 20000
for name, host in (("reusefirst", "api.example.test"), ("reuse", evil)):
    s = fresh()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    exchange(name, s, [head(host, name)], port)
"""


@pytest.mark.parametrize("path", ["read in passing", "through mitmproxy"])
def test_a_denied_host_sent_in_pieces_is_refused(
    run_coderun: Callable[..., Result], internet: DemoInternet, tmp_path: Path, path: str
) -> None:
    env = {**os.environ, "CODERUN_PEEK": "0" if path == "through mitmproxy" else "1"}
    nonce = uuid.uuid4().hex[:8]
    policy = tmp_path / "policy.toml"
    policy.write_text(FRONTING.format(ip=internet.ip))
    sender = tmp_path / "sender.py"
    sender.write_text(SENDER)
    mark = len(internet.logs())
    result = run_coderun("--policy", str(policy), "--image", "python",
                         "-v", f"{sender}:/sender.py:ro", "--",
                         "python3", "/sender.py", internet.ip, nonce, str(MAX_PACKETS),
                         env=env)  # fmt: skip
    answers = dict(line.split(" ", 1) for line in result.stdout.splitlines() if " " in line)
    assert answers.get("control", "").startswith("HTTP/1.") and " 200" in answers["control"], result
    arrived = internet.logs(mark)
    assert f"/control-{nonce}" in arrived and f"/reusefirst-{nonce}" in arrived
    for case in ("onebyte", "method", "emptyline", "tab", "trickle", "reuse"):
        assert f"{case}-{nonce}" not in arrived, (case, arrived, [e.to_dict() for e in result.log])
        assert " 200" not in answers.get(case, ""), (case, answers)
    refused = [e for e in result.log if e.verdict == "deny" and e.kind == "http"]
    assert len(refused) == 6, [e.to_dict() for e in result.log]
    # Read in passing, the trickled head is refused when the peeker stops reading;
    # through mitmproxy, which reads on, by its Host.
    unread = 1 if path == "read in passing" else 0
    assert sum("evil.example.test" in e.reason for e in refused) == 6 - unread
    assert sum("request head not complete" in e.reason for e in refused) == unread
