"""Issue 17: which sandbox process made a flow (process attribution), and exe rules."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from sandbox.internet import DemoInternet
from sandbox.line_prompt import SETTLE_SECONDS
from snitch.core.settings import Topology
from tests.approver.terminal import Terminal, cli_env
from tests.e2e.conftest import Result, coderun_cmd, latest_log

CURL_ONLY = """
[[rule]]
action = "allow"
host = "api.example.test"
proto = "dns"

[[rule]]
action = "allow"
host = "api.example.test"
exe = "/usr/bin/curl"
"""

PYTHON_GET = "import urllib.request as u; u.urlopen('http://api.example.test/hello', timeout=10)"


@pytest.fixture(params=list(Topology), ids=str)
def topology(request: pytest.FixtureRequest) -> Topology:
    """Attribution works in each topology (the pod's gateway shares the sandbox's
    network namespace; the host still finds the process by the sandbox's init pid)."""
    return Topology(request.param)


def test_curl_and_python_told_apart_and_an_exe_rule_allows_only_curl(
    run_coderun: Callable[..., Result], tmp_path: Path
) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text(CURL_ONLY)
    script = (
        "curl -sS -o /dev/null -w 'curl:%{http_code}\\n' http://api.example.test/hello; "
        f'python3 -c "{PYTHON_GET}" && echo python:allowed || echo python:refused'
    )
    result = run_coderun("--policy", str(policy), "--", "sh", "-c", script, timeout=180)
    assert result.status == 0, result.stderr
    assert "curl:200" in result.stdout, result.stdout + result.stderr
    assert "python:refused" in result.stdout, result.stdout + result.stderr
    flows = [f for f in result.flows(proto="tcp", dport=80) if "api.example.test" in f.names]
    by_exe = {f.exe: f for f in flows}
    assert "/usr/bin/curl" in by_exe, [(f.exe, f.verdict, f.reason) for f in flows]
    curl = by_exe["/usr/bin/curl"]
    assert curl.verdict == "allow" and curl.pid > 1 and curl.uid == 1000
    assert curl.cmdline.startswith("curl -sS") and "http://api.example.test/hello" in curl.cmdline
    # A forked child: curl's parent is the shell that ran it.
    assert curl.parents and curl.parents[0] in ("/usr/bin/dash", "/usr/bin/bash"), curl.parents
    python = [f for f in flows if f.exe.startswith("/usr/bin/python3")]
    assert python and all(f.verdict == "deny" for f in python), [(f.exe, f.verdict) for f in flows]
    assert python[0].parents[0] == curl.parents[0]


def test_a_held_connection_is_asked_about_with_its_program(
    home: Path, internet: DemoInternet, tags: dict[str, str]
) -> None:
    """Ask mode, the line prompt: the question (or a line right after it) names the
    program that asked and its parent shell; the log line keeps them."""
    cmd = coderun_cmd("run", "--mode", "ask", "--prompt", "line", "--egress-network",
                      internet.network_name, "--dns-upstream", internet.ip, "--",
                      "sh", "-c", "curl -sS http://api.example.test/asked; true")  # fmt: skip
    term = Terminal(cmd, cli_env(home))
    try:
        term.wait_for(b"Allow connection to api.example.test")
        term.wait_for(b"/usr/bin/curl (pid ")
        time.sleep(SETTLE_SECONDS + 0.15)  # a person reads before answering
        term.type("a\n")
        term.wait_for(b"allowed once: api.example.test 80/tcp")
        assert term.wait(60) == 0
    finally:
        term.close()
    shown = term.shown()
    assert b"/usr/bin/curl (pid " in shown and "← /usr/bin/dash".encode() in shown
    assert b"hello from api.example.test /asked" in shown
    [flow] = [e for e in latest_log(home) if e.kind == "flow" and e.names == ["api.example.test"]]
    assert flow.verdict == "allow" and flow.exe == "/usr/bin/curl"
    assert flow.parents[:1] == ["/usr/bin/dash"]
