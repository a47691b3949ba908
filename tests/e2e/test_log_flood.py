"""Issue 12, item 15: logs cannot be used to erase logs.

A hostile script floods the gateway with lookups of names nobody allowed (each one a
log line) in a real sandbox, with one allowed request in the middle. The session's log
stays under its cap, says how many lines it dropped (and the gateway's state says it
too), the allowed request is logged all the same, and retention run during the flood
leaves an older session alone: a running session's size counts against nobody.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from sandbox.internet import DemoInternet
from snitch.core.logentry import EntryKind
from snitch.core.logfile import read_log
from snitch.core.loglimit import SUMMARY_RESERVE
from snitch.review.logquery import folder_bytes, prune, session_running
from tests.e2e.conftest import coderun_cmd, wait_for

pytestmark = pytest.mark.docker

FLOOD = Path(__file__).with_name("logflood.py")
LOOKUPS = 20_000
CAP_MB = 0.25
RATE, BURST = 500, 2000
POLICY = """
[[rule]]
action = "allow"
host = "api.example.test"
port = 80
proto = "tcp"
"""


def coderun_run(internet: DemoInternet, *args: str) -> list[str]:
    return coderun_cmd("run", "--egress-network", internet.network_name,
                       "--dns-upstream", internet.ip, *args)  # fmt: skip


def test_a_flood_of_lookups_stays_under_the_cap_and_erases_no_older_log(
    home: Path, internet: DemoInternet, tmp_path: Path
) -> None:
    # An older session that ended: what retention must not sacrifice to the flood.
    older = subprocess.run(coderun_run(internet, "--", "sh", "-c", "echo older"),
                           capture_output=True, text=True, timeout=120)  # fmt: skip
    assert older.returncode == 0, older.stderr
    (older_dir,) = (home / "sessions").iterdir()
    older_size = folder_bytes(older_dir)

    ctl = tmp_path / "ctl"
    ctl.mkdir()
    ctl.chmod(0o777)  # the sandbox's user writes its markers here
    policy = tmp_path / "policy.toml"
    policy.write_text(POLICY)
    env = {**os.environ, "CODERUN_LOG_SESSION_MAX_MB": str(CAP_MB),
           "CODERUN_LOG_RATE": str(RATE), "CODERUN_LOG_BURST": str(BURST)}  # fmt: skip
    proc = subprocess.Popen(
        coderun_run(internet, "--policy", str(policy), "-v", f"{FLOOD}:/flood.py:ro",
                    "-v", f"{ctl}:/ctl", "--", "python3", "/flood.py", str(LOOKUPS), "/ctl"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        wait_for(lambda: (ctl / "flooded").exists() or proc.poll() is not None,
                 "the flood to end", timeout=180)  # fmt: skip
        assert proc.poll() is None, proc.communicate()
        flood_dir = next(p for p in (home / "sessions").iterdir() if p != older_dir)
        assert session_running(flood_dir)
        # Retention while the flood's session runs, with room for the older one only.
        removed = prune(home / "sessions", None, older_size + 4096)
        assert removed == [] and older_dir.exists() and flood_dir.exists()
    finally:
        (ctl / "stop").touch()
        out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    stats = json.loads(next(x for x in out.splitlines() if x.startswith("{")))
    assert stats["sent"] == LOOKUPS and stats["answered"] > LOOKUPS // 2, stats
    assert stats["allowed"].startswith("200 "), stats

    # The log stays under its cap (the "dropped" summaries use a small reserve).
    cap = int(CAP_MB * 1024 * 1024)
    log_file = flood_dir / "flows.jsonl"
    assert log_file.stat().st_size <= cap + SUMMARY_RESERVE
    log = list(read_log(log_file))
    flood_lines = [
        e for e in log if e.kind is EntryKind.DNS and e.qname.endswith("flood.example.test")
    ]
    assert all(e.verdict == "deny" for e in flood_lines)
    # ... and says how many lines it dropped, kind by kind, and in all.
    summaries = [e for e in log if e.kind is EntryKind.EVENT and e.reason == "log-limit"]
    assert summaries, "no 'log limit' line"
    dropped = sum(e.dropped for e in summaries)
    assert dropped > 0 and f"; {dropped} in all" in summaries[-1].message
    dropped_dns = sum(int(m) for e in summaries for m in re.findall(r"dns deny: (\d+)", e.message))
    # every lookup the gateway answered was logged or counted as dropped
    assert stats["answered"] <= len(flood_lines) + dropped_dns <= stats["sent"]
    state = json.loads((flood_dir / "gateway.json").read_text())
    assert state["state"] == "stopped" and state["log_dropped"] == dropped
    # The flood did not crowd out the allowed request: its own kind of line.
    assert [e for e in log if e.kind is EntryKind.FLOW and e.dst == internet.ip
            and e.dport == 80 and e.verdict == "allow"]  # fmt: skip
    assert [e for e in log if e.kind is EntryKind.HTTP and "/during-flood" in e.url]
    # After the run the older session is still there, its log whole.
    assert older_dir.exists() and folder_bytes(older_dir) == older_size
