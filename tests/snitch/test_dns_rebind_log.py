"""Issue 12, item 9: ``rebind`` lines as ``coderun log`` and ``coderun sessions`` show
and filter them (a rebind is a refusal: ``--verdict deny`` includes it)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from sandbox.cli.review import log, sessions
from sandbox.records import format_entry
from snitch.core.grammar import Verdict
from snitch.core.logentry import EntryKind, LogEntry
from snitch.review.logquery import Filter, filter_entries, resolutions, summarize

T0 = 1_700_000_000.0
ENTRIES = [
    LogEntry(EntryKind.DNS, time=T0, proto="dns", qname="host.rb.example.test", qtype="A",
             names=["host.rb.example.test"], verdict="rebind", rule="allow *.rb.example.test/any",
             reason="rebind: dropped 172.29.0.1 (the host or a network it hosts) from the answer"),
    LogEntry(EntryKind.DNS, time=T0 + 1, proto="dns", qname="mixed.rb.example.test", qtype="A",
             answers=["172.29.0.9"], names=["mixed.rb.example.test"], verdict="rebind",
             reason="rebind: dropped 127.0.0.1 (loopback) from the answer"),
    LogEntry(EntryKind.FLOW, time=T0 + 2, proto="tcp", src="172.30.5.3", sport=40000,
             dst="172.29.0.1", dport=9000, names=["host.rb.example.test"], verdict="rebind",
             reason="rebind: 172.29.0.1 is the host or a network it hosts; a name does not "
             "vouch for it (allow it by address) (via synthetic 198.18.0.1)"),
    LogEntry(EntryKind.FLOW, time=T0 + 3, proto="tcp", src="172.30.5.3", sport=40001,
             dst="203.0.113.5", dport=22, verdict="deny"),
    LogEntry(EntryKind.FLOW, time=T0 + 4, proto="tcp", src="172.30.5.3", sport=40002,
             dst="172.29.0.9", dport=80, names=["mixed.rb.example.test"], verdict="allow"),
]  # fmt: skip


@pytest.fixture()
def home(home: Path) -> Path:
    folder = home / "sessions" / "rb000001"
    folder.mkdir(parents=True)
    rec = {"id": "rb000001", "command": ["x"], "image": "bash", "mode": "enforce",
           "start": T0, "end": T0 + 9, "exit": 0}  # fmt: skip
    (folder / "session.json").write_text(json.dumps(rec))
    (folder / "flows.jsonl").write_text("".join(json.dumps(e.to_dict()) + "\n" for e in ENTRIES))
    return home


def invoke(command: object, *args: str) -> str:
    result = CliRunner().invoke(command, list(args), catch_exceptions=False)  # type: ignore[arg-type]
    assert result.exit_code == 0, result.output
    return result.stdout


def test_log_filters_rebind_and_counts_it_as_a_denial(home: Path) -> None:
    rebinds = [
        json.loads(x) for x in invoke(log, "show", "--verdict", "rebind", "--json").splitlines()
    ]
    assert [e["time"] for e in rebinds] == [T0, T0 + 1, T0 + 2]
    denied = invoke(log, "show", "--verdict", "deny", "--json").splitlines()
    assert len(denied) == 4  # deny includes rebind
    text = invoke(log, "show", "--verdict", "rebind")
    assert "rebind dns  host.rb.example.test A -> -" in text
    assert "rebind tcp  172.29.0.1:9000" in text
    (rec,) = [json.loads(x) for x in invoke(sessions, "--json").splitlines()]
    assert rec["counts"]["deny"] == 2 and rec["counts"]["allow"] == 1
    assert rec["counts"]["dns_deny"] == 2


def test_summaries_and_name_maps_see_rebinds() -> None:
    by_host = {s.host: s for s in summarize(ENTRIES)}
    assert by_host["host.rb.example.test"].deny == 2  # the lookup and the flow
    assert (
        by_host["mixed.rb.example.test"].deny == 1 and by_host["mixed.rb.example.test"].allow == 1
    )
    # The addresses the sandbox did get from a partly dropped answer stay known; a
    # dropped one is known only from where the (refused) flow went.
    assert resolutions(ENTRIES) == {
        "mixed.rb.example.test": ["172.29.0.9"],
        "host.rb.example.test": ["172.29.0.1"],
    }
    only = list(filter_entries(ENTRIES, Filter(verdicts=frozenset({str(Verdict.REBIND)}))))
    assert len(only) == 3
    assert format_entry(ENTRIES[2]).split()[1] == "rebind"
