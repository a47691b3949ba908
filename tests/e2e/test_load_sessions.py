"""Load (loadkit.py): N sessions at once, each making allowed and denied TCP and UDP
flows; each flow logged once with its verdict, and that verdict applied."""

from __future__ import annotations

import collections
import json
import re
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import docker
import pytest

from sandbox.internet import DemoInternet
from snitch.core.logentry import EntryKind
from snitch.core.logfile import read_log
from tests.e2e.loadkit import own_leftovers, results, run_cmd, session_dirs

pytestmark = pytest.mark.docker


MIXED = r"""
import json, select, socket, sys, urllib.request
tag, internet, evil, k = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
out = {"tag": tag, "http": 0, "echo": 0, "refused": 0, "denied_udp_answered": 0}
for i in range(k):  # allowed TCP (through the proxy)
    with urllib.request.urlopen(f"http://{internet}/load-{tag}-{i}", timeout=20) as r:
        out["http"] += r.status == 200
for i in range(k):  # denied TCP: refused at once
    try:
        socket.create_connection((evil, 9100 + i), timeout=20).close()
    except ConnectionRefusedError:
        out["refused"] += 1
def udp(dst, wait):
    socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(k)]
    for s in socks:
        s.sendto(b"coderun-load", (dst, 7))
    got, pending = 0, list(socks)
    while pending:
        ready, _, _ = select.select(pending, [], [], wait)
        if not ready:
            break
        for s in ready:
            s.recv(100)
            got += 1
            pending.remove(s)
    for s in socks:
        s.close()
    return got
out["echo"] = udp(internet, 20)  # allowed UDP: every datagram answered
out["denied_udp_answered"] = udp(evil, 1.5)  # denied UDP (evil echoes too): none
print(json.dumps(out), flush=True)
"""


def concurrent_sessions(
    home: Path, internet: DemoInternet, tmp: Path, n: int, k: int
) -> dict[str, Any]:
    """``n`` runs at once, each making ``k`` flows of four kinds (allowed/denied TCP/UDP)."""
    script, policy = tmp / "mixed.py", tmp / "mixed.toml"
    script.write_text(MIXED)
    policy.write_text(f'[[rule]]\naction = "allow"\ncidr = "{internet.ip}/32"\n')
    evil = internet.hosts["evil.example.test"]
    start = time.monotonic()
    procs = {}
    for i in range(n):
        tag = f"s{i}-{uuid.uuid4().hex[:6]}"
        procs[tag] = subprocess.Popen(
            run_cmd(
                internet,
                "--mode",
                "enforce",
                "--policy",
                str(policy),
                "-v",
                f"{script}:/mixed.py:ro",
                "--",
                "python3",
                "/mixed.py",
                tag,
                internet.ip,
                evil,
                str(k),
            ),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
    outputs = {tag: p.communicate(timeout=600) for tag, p in procs.items()}
    seconds = time.monotonic() - start
    by_tag = {}
    for folder in session_dirs(home):
        record = json.loads((folder / "session.json").read_text())
        command = record.get("command") or []
        if len(command) > 2 and command[2] in procs:
            by_tag[command[2]] = list(read_log(folder / "flows.jsonl"))
    internet_log = internet.logs()
    sessions = []
    for tag, proc in procs.items():
        log = by_tag.get(tag, [])
        flows = [e for e in log if e.kind is EntryKind.FLOW]
        kinds = collections.Counter(
            (
                e.proto,
                "internet" if e.dst == internet.ip else "evil" if e.dst == evil else e.dst,
                e.verdict,
            )
            for e in flows
        )
        keys = collections.Counter((e.proto, e.src, e.sport, e.dst, e.dport) for e in flows)
        repeated = [key for key, c in keys.items() for _ in range(c - 1)]
        out = results(outputs[tag][0])
        sessions.append(
            {
                "tag": tag,
                "status": proc.returncode,
                "stderr": outputs[tag][1][-2000:],
                "result": out[0] if out else {},
                "flows": len(flows),
                "kinds": dict(kinds),
                "duplicates": len(repeated),
                "repeated_allowed_tcp": len(
                    [r for r in repeated if r[0] == "tcp" and r[3] == internet.ip]
                ),
                "arrived": len(re.findall(rf"/load-{tag}-\d+ ", internet_log)),
            }
        )
    return {
        "n": n,
        "k": k,
        "seconds": seconds,
        "sessions": sessions,
        "flows": sum(s["flows"] for s in sessions),
    }


def check_concurrent(stats: dict[str, Any]) -> None:
    k = stats["k"]
    for s in stats["sessions"]:
        assert s["status"] == 0, s
        assert s["result"] == {
            "tag": s["tag"],
            "http": k,
            "echo": k,
            "refused": k,
            "denied_udp_answered": 0,
        }, s
        assert s["kinds"] == {
            ("tcp", "internet", "allow"): k,
            ("udp", "internet", "allow"): k,
            ("tcp", "evil", "deny"): k,
            ("udp", "evil", "deny"): k,
        }, s
        # Each flow once, even one whose verdict took over a second and whose SYN was
        # retransmitted meanwhile (test_slow_verdict_logs_a_flow_once).
        assert s["flows"] == 4 * k and s["duplicates"] == 0, s
        assert s["arrived"] == k, s  # each allowed request reached the server once


def test_sessions_at_once_log_every_flow_once(
    home: Path,
    internet: DemoInternet,
    tags: dict[str, str],
    tmp_path: Path,
    client: docker.DockerClient,
) -> None:
    stats = concurrent_sessions(home, internet, tmp_path, n=4, k=5)
    check_concurrent(stats)
    assert own_leftovers(client, home) == []
