"""Issue 6: audit a run, turn what it did into an allowlist, enforce it."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

from sandbox.internet import DemoInternet
from snitch.core.store import RuleStore
from tests.e2e.conftest import Result, coderun_cmd

PROBE = Path(__file__).with_name("probe.py")
STEPS = ["http:http://api.example.test/a", "udp:api.example.test:7"]


def probe(run_coderun: Callable[..., Result], *args: str, steps: list[str]) -> Result:
    return run_coderun(*args, "-v", f"{PROBE}:/probe.py:ro", "--", "python3", "/probe.py",
                       *steps)  # fmt: skip


def oks(result: Result) -> dict[str, bool]:
    lines = [json.loads(x) for x in result.stdout.splitlines() if x.startswith("{")]
    return {str(x["step"]): bool(x["ok"]) for x in lines}


def test_audit_then_from_session_then_enforce(
    run_coderun: Callable[..., Result], home: Path, internet: DemoInternet,
) -> None:
    audit = probe(run_coderun, "--mode", "audit", steps=STEPS)
    assert all(oks(audit).values()), audit.stdout
    session = json.loads(
        subprocess.run(coderun_cmd("sessions", "--json"), capture_output=True, text=True,
                       check=True).stdout.splitlines()[-1]  # fmt: skip
    )["id"]
    shown = subprocess.run(coderun_cmd("rules", "from-session", session), capture_output=True,
                           text=True)  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    assert "+ allow api.example.test:80/tcp" in shown.stdout, shown.stdout
    assert not RuleStore(home / "rules" / "rules.db").list()  # shown, not applied
    applied = subprocess.run(coderun_cmd("rules", "from-session", session, "--apply"),
                             capture_output=True, text=True)  # fmt: skip
    assert applied.returncode == 0, applied.stderr
    rules = RuleStore(home / "rules" / "rules.db").list()
    assert {(r.host, r.port_lo, str(r.proto)) for r in rules} >= {
        ("api.example.test", 80, "tcp"), ("api.example.test", 7, "udp")
    }
    assert all(r.cidr is None for r in rules)  # names, not addresses

    # The same script passes under enforce; a destination it never used is denied.
    enforce = probe(run_coderun, "--mode", "enforce",
                    steps=[*STEPS, "http:http://tracker.example.test/new"])  # fmt: skip
    got = oks(enforce)
    assert got[STEPS[0]] and got[STEPS[1]], enforce.stdout
    assert not got["http:http://tracker.example.test/new"]
    assert enforce.dns(qname="tracker.example.test", verdict="deny")
