"""``coderun log --kind file`` keeps the share daemons' file lines (files.jsonl) apart from
the gateway's, and ``rules from-session`` proposes no network rule from them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from snitch.core.logentry import EntryKind, LogEntry
from tests.sandbox.test_review_cli import ENTRIES, T0, run, write_session

FILES = [
    LogEntry(EntryKind.FILE, time=T0 + 1.5, names=["/home/coderun/.aws/credentials"],
             path="~/.aws/credentials", method="read", access="read",
             verdict="deny", rule_id=2, rule="deny-file ~/.aws/credentials", pid=7,
             exe="/usr/bin/python3"),
    LogEntry(EntryKind.FILE, time=T0 + 2.5, names=["/out/\x1b[2Jx"], path="/work/out/\x1b[2Jx",
             method="write", access="write",
             verdict="allow", bytes_out=12),
]  # fmt: skip


@pytest.fixture()
def home(home: Path) -> Path:
    folder = write_session(home, "cccc3333", T0, T0 + 60, ENTRIES)
    (folder / "files.jsonl").write_text("".join(json.dumps(e.to_dict()) + "\n" for e in FILES))
    return home


def test_kind_file_keeps_only_file_lines(home: Path) -> None:
    got = [json.loads(x) for x in run("log", "cccc", "--kind", "file", "--json").splitlines()]
    assert got == [e.to_dict() for e in FILES]
    everything = run("log", "cccc", "--json").splitlines()
    assert len(everything) == len(ENTRIES) + len(FILES)
    flows = [
        json.loads(x)["kind"] for x in run("log", "cccc", "--kind", "flow", "--json").splitlines()
    ]
    assert set(flows) == {"flow"}
    denied = run("log", "cccc", "--kind", "file", "--verdict", "deny", "--json").splitlines()
    assert [json.loads(x)["path"] for x in denied] == ["~/.aws/credentials"]
    text = run("log", "cccc", "--kind", "file")
    assert "\x1b" not in text and len(text.splitlines()) == 2
    assert "/home/coderun/.aws/credentials" in text and "/out/\\x1b[2Jx" in text


def test_from_session_proposes_nothing_from_file_lines(home: Path) -> None:
    proposed = [json.loads(x) for x in run("rules", "from-session", "cccc", "--json").split("\n")
                if x]  # fmt: skip
    assert proposed and all(r["proto"] != "file" and r["file"] is None for r in proposed)
