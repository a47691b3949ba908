"""The review commands on a data dir made by hand: sessions, log, export, from-session."""

from __future__ import annotations

import json
from pathlib import Path

import click
import pytest
import yaml
from click.testing import CliRunner

from sandbox.cli.review import export_command, log, sessions
from sandbox.cli.rules import rules
from sandbox.paths import rules_db
from snitch.core.logentry import EntryKind, LogEntry
from snitch.core.model import Action, Proto, Rule
from snitch.core.store import RuleStore

T0 = 1_700_000_000.0


@click.group()
def cli() -> None:
    """The commands as the lead registers them."""


cli.add_command(sessions)
cli.add_command(log)
cli.add_command(export_command)


cli.add_command(rules)  # the real group: from-session is one of its commands

ENTRIES = [
    LogEntry(EntryKind.DNS, time=T0 + 1, proto="dns", qname="api.example.test", qtype="A",
             answers=["198.51.100.7"], names=["api.example.test"], verdict="allow"),
    LogEntry(EntryKind.FLOW, time=T0 + 2, proto="tcp", src="10.0.0.2", sport=40000,
             dst="198.51.100.7", dport=443, names=["api.example.test"], verdict="allow"),
    LogEntry(EntryKind.FLOW, time=T0 + 3, proto="tcp", src="10.0.0.2", sport=40001,
             dst="203.0.113.5", dport=22, verdict="deny"),
    LogEntry(EntryKind.FLOW, time=T0 + 4, proto="udp", src="10.0.0.2", sport=40002,
             dst="192.0.2.9", dport=123, verdict="allow", reason="ask: allow once by tui"),
    LogEntry(EntryKind.HTTP, time=T0 + 5, method="GET", url="https://api.example.test/x",
             status=200, bytes_out=10, bytes_in=99, verdict="allow"),
]  # fmt: skip


@pytest.fixture()
def home(home: Path) -> Path:
    write_session(home, "aaaa1111", T0, T0 + 60, ENTRIES)
    write_session(home, "bbbb2222", T0 + 100, None, [ENTRIES[2]], state="ready")
    return home


def write_session(
    home: Path, sid: str, start: float, end: float | None, entries: list[LogEntry], state: str = ""
) -> Path:
    folder = home / "sessions" / sid
    folder.mkdir(parents=True)
    rec = {"id": sid, "command": ["sh", "run.sh"], "image": "bash", "mode": "audit",
           "start": start, "end": end, "exit": None if end is None else 3}  # fmt: skip
    (folder / "session.json").write_text(json.dumps(rec))
    (folder / "flows.jsonl").write_text("".join(json.dumps(e.to_dict()) + "\n" for e in entries))
    if state:
        (folder / "gateway.json").write_text(json.dumps({"state": state}))
    return folder


def run(*args: str, ok: bool = True) -> str:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    if ok:
        assert result.exit_code == 0, result.output
    return result.stdout


def test_sessions_table_and_json(home: Path) -> None:
    table = run("sessions").splitlines()
    assert table[0].startswith("ID") and "ALLOW" in table[0]
    assert "aaaa1111" in table[1] and "running" in table[2]
    recs = [json.loads(x) for x in run("sessions", "--json").splitlines()]
    assert [r["id"] for r in recs] == ["aaaa1111", "bbbb2222"]
    assert recs[0]["counts"] == {
        "allow": 2, "deny": 1, "ask": 1, "dns": 1, "dns_deny": 0, "http": 1, "events": 0
    }  # fmt: skip
    assert recs[0]["exit"] == 3 and recs[0]["running"] is False and recs[1]["running"] is True
    assert run("sessions", "--json", "--limit", "1").count("\n") == 1


def test_log_filters_and_outputs(home: Path) -> None:
    text = run("log", "aaaa")
    assert "allow  tcp  198.51.100.7:443" in text and "deny   tcp  203.0.113.5:22" in text
    assert run("log").count("\n") == 1  # the latest session by default
    denied = [json.loads(x) for x in run("log", "aaaa", "--verdict", "deny", "--json").splitlines()]
    assert denied == [ENTRIES[2].to_dict()]
    hosts = run("log", "aaaa", "--host", "*.example.test", "--json").splitlines()
    assert len(hosts) == 3
    assert len(run("log", "aaaa", "--proto", "udp", "--port", "123", "--json").splitlines()) == 1
    since = str(T0 + 3)
    assert (
        len(run("log", "aaaa", "--since", since, "--until", str(T0 + 4), "--json").splitlines())
        == 2
    )
    csv_text = run("log", "aaaa", "--csv", "--kind", "flow").splitlines()
    assert csv_text[0].startswith("time,kind,session,verdict") and len(csv_text) == 4
    summary = [json.loads(x) for x in run("log", "aaaa", "--summary", "--json").splitlines()]
    assert summary[0]["host"] == "api.example.test" and summary[0]["hits"] == 3
    assert "HOST" in run("log", "aaaa", "--summary")


def test_log_pcap_follow_and_errors(home: Path, tmp_path: Path) -> None:
    from scapy.utils import rdpcap

    out = tmp_path / "f.pcap"
    run("log", "aaaa", "--pcap", str(out))
    assert len(rdpcap(str(out))) == 3
    followed = run("log", "aaaa", "--follow", "--json").splitlines()  # ended: reads and stops
    assert len(followed) == len(ENTRIES)
    assert CliRunner().invoke(cli, ["log", "nope"]).exit_code == 1
    assert CliRunner().invoke(cli, ["log", "aaaa", "--since", "yesterday"]).exit_code == 2
    assert CliRunner().invoke(cli, ["log", "aaaa", "--json", "--csv"]).exit_code == 2


def test_log_prune(home: Path) -> None:
    assert run("log", "prune", "--keep-days", "1", "--dry-run").split() == [
        "would", "remove", "aaaa1111"
    ]  # fmt: skip
    assert (home / "sessions" / "aaaa1111").exists()
    run("log", "prune", "--keep-days", "1")
    assert sorted(p.name for p in (home / "sessions").iterdir()) == ["bbbb2222"]
    assert CliRunner().invoke(cli, ["log", "prune"]).exit_code == 2


def test_from_session_diff_then_apply(home: Path) -> None:
    with RuleStore(rules_db()) as store:
        store.add(Rule(Action.ALLOW, host="code.example.test", port_lo=443, port_hi=443,
                       proto=Proto.TCP))  # fmt: skip
    diff = run("rules", "from-session", "aaaa")
    assert "  allow code.example.test:443/tcp" in diff
    assert "+ allow api.example.test:443/tcp" in diff and "+ allow 192.0.2.9:123/udp" in diff
    assert "203.0.113.5" not in diff
    with RuleStore(rules_db()) as store:
        assert len(store.list()) == 1  # not applied without --apply
    run("rules", "from-session", "aaaa", "--apply")
    with RuleStore(rules_db()) as store:
        added = [r for r in store.list() if r.source == "session:aaaa1111"]
    assert sorted(r.describe() for r in added) == [
        "allow 192.0.2.9:123/udp", "allow api.example.test:443/tcp"
    ]  # fmt: skip
    again = CliRunner().invoke(cli, ["rules", "from-session", "aaaa", "--yes"])
    assert again.exit_code == 0 and "nothing to propose" in again.output


def test_export_rules_and_session(home: Path, tmp_path: Path) -> None:
    with RuleStore(rules_db()) as store:
        store.add(Rule(Action.ALLOW, host="api.example.test", port_lo=443, port_hi=443,
                       proto=Proto.TCP))  # fmt: skip
        store.add(Rule(Action.DENY, host="ads.test"))
    nft = run("export", "--format", "nftables", "--resolver", "192.0.2.53")
    assert '198.51.100.7 . 443 comment "api.example.test"' in nft  # address from the logs
    assert "warning: allow" not in nft
    result = CliRunner().invoke(cli, ["export", "--format", "iptables"])
    assert "no address of ads.test seen" in result.output  # warned (stderr is mixed in)
    k8s = yaml.safe_load(run("export", "--format", "k8s", "--session", "aaaa",
                             "--label", "role=ci", "--namespace", "ci"))  # fmt: skip
    assert k8s["spec"]["podSelector"] == {"matchLabels": {"role": "ci"}}
    cidrs = [p["ipBlock"]["cidr"] for e in k8s["spec"]["egress"][1:] for p in e["to"]]
    assert sorted(cidrs) == ["192.0.2.9/32", "198.51.100.7/32"]
    out = tmp_path / "os"
    run("export", "--format", "opensnitch", "-o", str(out))
    assert len(list(out.glob("*.json"))) == 2
    target = tmp_path / "rules.lsrules"
    run("export", "--format", "lsrules", "-o", str(target))
    assert json.loads(target.read_text())["rules"]
    bad = CliRunner().invoke(cli, ["export", "--format", "k8s", "--rules", "--session", "a"])
    assert bad.exit_code == 2


def test_log_shows_and_filters_the_asking_process(home: Path) -> None:
    hostile = "/tmp/\x1b]0;owned\x07/curl"
    attributed = [
        LogEntry(EntryKind.FLOW, time=T0 + 201, proto="tcp", src="10.0.0.2", sport=40010,
                 dst="198.51.100.7", dport=80, verdict="allow", pid=7, uid=1000,
                 exe="/usr/bin/curl", cmdline="curl http://api.example.test/",
                 parents=["/usr/bin/dash"]),
        LogEntry(EntryKind.FLOW, time=T0 + 202, proto="tcp", src="10.0.0.2", sport=40011,
                 dst="198.51.100.7", dport=80, verdict="deny", pid=8, uid=1000,
                 exe="/usr/bin/python3.13", cmdline="python3 -c \x1b[2J", parents=[]),
        LogEntry(EntryKind.FLOW, time=T0 + 203, proto="tcp", src="10.0.0.2", sport=40012,
                 dst="198.51.100.7", dport=80, verdict="deny", pid=9, uid=1000, exe=hostile),
        LogEntry(EntryKind.FLOW, time=T0 + 204, proto="tcp", src="10.0.0.2", sport=40013,
                 dst="198.51.100.7", dport=80, verdict="deny"),  # not found in time
    ]  # fmt: skip
    write_session(home, "cccc3333", T0 + 200, T0 + 260, attributed)
    text = run("log", "cccc").splitlines()
    assert text[0].endswith("by /usr/bin/curl (pid 7) ← /usr/bin/dash")
    assert text[1].endswith("by /usr/bin/python3.13 (pid 8)")
    assert "\x1b" not in text[2] and "by /tmp/\\x1b]0;owned\\x07/curl (pid 9)" in text[2]
    assert text[3].endswith("by unknown")
    curl = [json.loads(x) for x in run("log", "cccc", "--exe", "*/curl", "--json").splitlines()]
    assert [e["sport"] for e in curl] == [40010, 40012]
    assert curl[0]["parents"] == ["/usr/bin/dash"] and curl[0]["cmdline"].startswith("curl ")
    python = run("log", "cccc", "--exe", "/usr/bin/python3*", "--exe", "/nowhere").splitlines()
    assert len(python) == 1 and "python3.13" in python[0]
    rows = run("log", "cccc", "--csv").splitlines()
    assert rows[0].endswith(",pid,uid,exe,cmdline,parents")
    assert rows[1].endswith(",7,1000,/usr/bin/curl,curl http://api.example.test/,/usr/bin/dash")
    assert rows[4].endswith(",,,,,")  # unknown: empty cells
