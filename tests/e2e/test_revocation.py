"""Issue 12, item 13: revocation, on a real gateway against the demo internet.

A long-lived TCP connection (through the proxy, and direct) and a UDP "connection",
allowed by a stored rule, keep working; ``coderun rules rm`` (the store, polled by the
gateway) cuts them within a deadline: the TCP sender gets a reset, the UDP echoes stop.
A connection allowed once is that connection: a second one on the same 5-tuple is asked
about again.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from sandbox.internet import DemoInternet
from snitch.core.model import Action, DecisionRequest
from tests.e2e.conftest import coderun_cmd, latest_log, wait_for
from tests.e2e.test_ask_mode import LiveRun

pytestmark = pytest.mark.docker
CUT_DEADLINE = 5.0  # seconds from `rules rm` to the flow being gone (measured: well under 1)

# A slow upload that never ends: 1000 bytes every 50 ms on one connection.
UPLOAD = r"""
import json, socket, sys, time
s = socket.create_connection((sys.argv[1], 80), timeout=10)
s.sendall(b"POST /slow HTTP/1.1\r\nHost: api.example.test\r\nContent-Length: 100000000\r\n\r\n")
sent = 0
try:
    while sent < 50_000_000:
        s.sendall(b"x" * 1000)
        sent += 1000
        if sent % 10_000 == 0:
            print(json.dumps({"t": time.monotonic(), "sent": sent}), flush=True)
        time.sleep(0.05)
except OSError as exc:
    print(json.dumps({"t": time.monotonic(), "error": repr(exc), "sent": sent}), flush=True)
"""

# Datagrams every 100 ms from one socket (one conntrack entry); stops 4 s after the
# echoes stop, having seen some.
ECHO = r"""
import json, socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(0.1)
last_echo, start = None, time.monotonic()
while time.monotonic() - start < 60:
    s.sendto(b"coderun-revoke", (sys.argv[1], 7))
    sent_at = time.monotonic()
    try:
        s.recvfrom(100)
        last_echo = time.monotonic()
        print(json.dumps({"t": sent_at, "echo": True}), flush=True)
    except TimeoutError:
        print(json.dumps({"t": sent_at, "echo": False}), flush=True)
    if last_echo is not None and time.monotonic() - last_echo > 4:
        break
    time.sleep(max(0.0, sent_at + 0.1 - time.monotonic()))
"""


class Background:
    """``coderun run`` in the background; its stdout JSON lines collected as they come."""

    def __init__(self, internet: DemoInternet, script: Path, *args: str) -> None:
        cmd = coderun_cmd("run", "--mode", "enforce", "--egress-network", internet.network_name,
                          "--dns-upstream", internet.ip, *args, "-v", f"{script}:/s.py:ro",
                          "--", "python3", "/s.py", internet.ip)  # fmt: skip
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines: list[dict[str, Any]] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith("{"):
                self.lines.append(json.loads(line))

    def finish(self, timeout: float = 60) -> tuple[int, str]:
        _, err = self.proc.communicate(timeout=timeout)
        self._reader.join(5)
        return self.proc.returncode, err

    def stop(self) -> None:
        """If still running (a failed test): SIGTERM, which cleans the session up."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def add_rule(*args: str) -> int:
    out = subprocess.run(coderun_cmd("rules", "add", "allow", *args, "--json"),
                         capture_output=True, text=True, check=True).stdout  # fmt: skip
    return int(json.loads(out)["id"])


def remove_rule(rule_id: int) -> float:
    """``coderun rules rm``; returns when it was done (CLOCK_MONOTONIC, as the sandbox's)."""
    subprocess.run(coderun_cmd("rules", "rm", str(rule_id)), check=True, capture_output=True)
    return time.monotonic()


@pytest.mark.parametrize("web_ports", ["80,443", ""], ids=["through-the-proxy", "direct"])
def test_removing_the_rule_cuts_an_established_tcp_connection(
    home: Path, internet: DemoInternet, tags: dict[str, str], tmp_path: Path, web_ports: str
) -> None:
    rule_id = add_rule(internet.ip, "--port", "80", "--proto", "tcp")
    script = tmp_path / "upload.py"
    script.write_text(UPLOAD)
    run = Background(internet, script, "--web-ports", web_ports)
    try:
        wait_for(lambda: len(run.lines) >= 4, "the upload to run a while", timeout=60)
        assert not any("error" in line for line in run.lines), run.lines  # it works meanwhile
        removed = remove_rule(rule_id)
        wait_for(lambda: any("error" in line for line in run.lines), "the cut", timeout=30)
        status, err = run.finish()
    finally:
        run.stop()
    assert status == 0, err
    [cut] = [line for line in run.lines if "error" in line]
    assert "ConnectionReset" in cut["error"] or "BrokenPipe" in cut["error"], cut
    seconds = cut["t"] - removed
    assert seconds < CUT_DEADLINE, f"cut {seconds:.2f} s after the rule was removed"
    print(f"\nTCP ({web_ports or 'direct'}) cut {seconds:.3f} s after `rules rm`")
    log = latest_log(home)
    cuts = [e for e in log if e.kind == "flow" and e.reason.startswith("cut:")]
    assert len(cuts) == 1 and cuts[0].dst == internet.ip and cuts[0].dport == 80, cuts


def test_removing_the_rule_cuts_a_udp_flow(
    home: Path, internet: DemoInternet, tags: dict[str, str], tmp_path: Path
) -> None:
    rule_id = add_rule(internet.ip, "--port", "7", "--proto", "udp")
    script = tmp_path / "echo.py"
    script.write_text(ECHO)
    run = Background(internet, script)
    try:
        wait_for(lambda: sum(1 for line in run.lines if line["echo"]) >= 5, "echoes", timeout=60)
        removed = remove_rule(rule_id)
        status, err = run.finish()
    finally:
        run.stop()
    assert status == 0, err
    echoes = [line["t"] for line in run.lines if line["echo"]]
    unanswered_after = [line for line in run.lines if not line["echo"] and line["t"] > removed]
    assert max(echoes) - removed < CUT_DEADLINE, "the echoes went on after the rule was removed"
    assert len(unanswered_after) >= 10  # the sender went on; nothing came back
    print(f"\nUDP: last echo {max(echoes) - removed:.3f} s after `rules rm`")
    cuts = [e for e in latest_log(home) if e.kind == "flow" and e.reason.startswith("cut:")]
    assert [(e.proto, e.dport) for e in cuts] == [("udp", 7)]


# Two connections from one source port, one after the other (reset, so the port is free).
TWICE = r"""
import json, socket, struct, sys
for attempt in (1, 2):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.bind(("0.0.0.0", 45000))
    s.settimeout(60)
    try:
        s.connect((sys.argv[1], 80))
        result = "connected"
    except OSError as exc:
        result = type(exc).__name__
    s.close()
    print(json.dumps({"attempt": attempt, "result": result}), flush=True)
"""


def test_once_is_one_connection_and_the_next_one_is_asked_again(
    home: Path, internet: DemoInternet, tags: dict[str, str], tmp_path: Path
) -> None:
    script = tmp_path / "twice.py"
    script.write_text(TWICE)
    run = LiveRun(home, internet, "-v", f"{script}:/twice.py:ro", "--", "python3",
                  "/twice.py", internet.ip)  # fmt: skip
    try:
        [first] = run.wait_pending(1)
        assert (first.dst, first.sport, first.dport) == (internet.ip, 45000, 80)
        run.decide(DecisionRequest(Action.ALLOW, pending_id=first.id, lifetime="once"))
        # The same 5-tuple again: a new connection, so a new question.
        second = wait_for(lambda: [p for p in run.pending() if p.id != first.id], "a new item")
        [item] = second  # type: ignore[misc]
        assert (item.sport, item.dport) == (45000, 80)
        run.decide(DecisionRequest(Action.DENY, pending_id=item.id, lifetime="once"))
        status, results, err = run.finish()
    finally:
        run.kill()
    assert status == 0, err
    assert [(r["attempt"], r["result"]) for r in results] == [
        (1, "connected"),
        (2, "ConnectionRefusedError"),
    ]
