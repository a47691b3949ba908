"""Issue 17: which sandbox process made a flow (process attribution), and exe rules."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from tests.e2e.conftest import Result

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
    # Lookups too (best effort: the resolver's socket lives until its answer).
    lookups = [e for e in result.dns(qname="api.example.test") if e.exe]
    assert {e.exe for e in lookups} & {"/usr/bin/curl", python[0].exe}, result.dns()
