"""Issue #12 item 1 end to end: a hostile script in a real sandbox (audit mode) sends
HTTP requests and lookups whose path, Host, headers and names carry escape sequences;
``coderun log`` on a pty then shows them escaped, and ``--json`` keeps them exact.
(DNS names reach the log already escaped by dnslib: ``\\027``; the HTTP path, Host and
headers reach it raw.)"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from sandbox.internet import DemoInternet
from tests.approver.terminal import (
    assert_inert,
    cli_env,
    coderun,
    run_on_terminal,
    run_piped,
    terminal_problems,
)

pytestmark = pytest.mark.docker

SCRIPT = Path(__file__).with_name("hostile_requests.py")


def _text_of(entry: dict[str, object]) -> str:
    """Every string of a log entry, joined."""
    parts: list[str] = []
    for value in entry.values():
        parts += value if isinstance(value, list) else [value] if isinstance(value, str) else []
    return " ".join(parts)


def test_log_of_a_hostile_run_is_inert_on_a_terminal(
    home: Path, internet: DemoInternet, tags: dict[str, str]
) -> None:
    run = subprocess.run(
        coderun("run", "--mode", "audit", "--egress-network", internet.network_name,
                "--dns-upstream", internet.ip, "-v", f"{SCRIPT}:/hostile.py:ro", "--",
                "python3", "/hostile.py"),
        capture_output=True, env=cli_env(home), timeout=180, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr.decode(errors="replace")
    # The log holds the hostile bytes exactly (else this test would prove nothing).
    raw = run_piped(coderun("log", "--json"), cli_env(home)).stdout.decode()
    entries = [json.loads(line) for line in raw.splitlines()]
    hostile = [e for e in entries if terminal_problems(_text_of(e).encode())]
    assert sum(e["kind"] == "http" for e in hostile) == 3, entries  # (dnslib escapes qnames)
    for args, visible in (
        (("log",), b"/\\x1b]0;pwned\\x07/\\u202egpj.exe"),
        (("log", "--summary"), b"\\x1b]52;c;cHlwaS50ZXN0\\x07"),
        (("log", "--csv"), b"/x\\x1b[2J\\x1b[H"),
    ):
        status, shown = run_on_terminal(coderun(*args), cli_env(home))
        assert status == 0, shown
        assert_inert(shown)
        assert visible in shown  # shown escaped, not dropped
