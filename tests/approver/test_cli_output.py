"""Issue #12 item 1: nothing the sandbox controls reaches the terminal raw.

A session folder with a hostile ``flows.jsonl`` (escape sequences, bidi overrides,
zero-width characters, look-alike and punycode names, a name that forges a log line) and
a rule store with hostile notes, paths and names are planted in a temporary
CODERUN_HOME; the real ``coderun`` then runs on a pty (and on a pipe) and the bytes it
wrote are checked. No Docker needed.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from snitch.core.logentry import EntryKind, LogEntry
from snitch.core.model import Action, Proto, Rule
from snitch.core.store import RuleStore
from tests.approver.terminal import (
    BIDI,
    C1_CSI,
    CLEAR,
    CLIPBOARD,
    CYRILLIC_NAME,
    FORGED,
    OSC_TITLE,
    PUNY_NAME,
    ZERO_WIDTH,
    assert_inert,
    cli_env,
    coderun,
    run_on_terminal,
    run_piped,
)

T0 = 1_700_000_000.0
SID = "hostile0001"
PROPOSAL_SID = "proposal0002"
HOSTILE_HOST = f"api{CLIPBOARD}.example.test"

ENTRIES = [
    LogEntry(EntryKind.DNS, session=SID, time=T0 + 1, proto="dns",
             qname=f"x{OSC_TITLE}.example.test", qtype="A", answers=[f"198.51.100.7{CLEAR}"],
             verdict="deny", reason=f"no rule{C1_CSI}"),
    LogEntry(EntryKind.FLOW, session=SID, time=T0 + 2, proto="tcp", src="10.0.0.2", sport=40000,
             dst="198.51.100.7", dport=443, names=[HOSTILE_HOST, CYRILLIC_NAME], verdict="allow",
             rule=f"allow {BIDI}gro.ipyp"),
    LogEntry(EntryKind.FLOW, session=SID, time=T0 + 3, proto="tcp", src="10.0.0.2", sport=40001,
             dst="203.0.113.5", dport=4444, names=[f"evil.example.test\n{FORGED}"], verdict="deny"),
    LogEntry(EntryKind.HTTP, session=SID, time=T0 + 4, method=f"GET{CLEAR}",
             url=f"http://api.example.test/{OSC_TITLE}{BIDI}gpj.exe", status=200, bytes_out=10,
             bytes_in=99, verdict="allow", message=f"via {C1_CSI}proxy"),
    LogEntry(EntryKind.TLS, session=SID, time=T0 + 5, proto="tcp", dst="198.51.100.8", dport=443,
             sni=f"{ZERO_WIDTH}pypi.test", verdict="allow"),
    LogEntry(EntryKind.EVENT, session=SID, time=T0 + 6, message=f"ended\r\x1b[2K{FORGED}\x7f"),
]  # fmt: skip

# A run that was allowed to reach an internationalised name (looked up in its ASCII form).
PROPOSAL_ENTRIES = [
    LogEntry(EntryKind.DNS, session=PROPOSAL_SID, time=T0 + 1, proto="dns", qname=PUNY_NAME,
             qtype="A", answers=["198.51.100.9"], verdict="allow"),
    LogEntry(EntryKind.FLOW, session=PROPOSAL_SID, time=T0 + 2, proto="tcp", src="10.0.0.2",
             sport=40000, dst="198.51.100.9", dport=443, names=[PUNY_NAME], verdict="allow"),
    LogEntry(EntryKind.DNS, session=PROPOSAL_SID, time=T0 + 3, proto="dns",
             qname=f"tracker{CLIPBOARD}.example.test", qtype="A", answers=["198.51.100.10"],
             verdict="allow"),
    LogEntry(EntryKind.FLOW, session=PROPOSAL_SID, time=T0 + 4, proto="tcp", src="10.0.0.2",
             sport=40001, dst="198.51.100.10", dport=443, verdict="allow"),
]  # fmt: skip

RULES = [
    Rule(Action.ALLOW, host="api.example.test", port_lo=443, port_hi=443, proto=Proto.TCP,
         note=f"trusted{OSC_TITLE}{CLIPBOARD}", source=f"prompt{CLEAR}"),
    Rule(Action.ALLOW, host=PUNY_NAME, port_lo=8443, port_hi=8443, proto=Proto.TCP),
    Rule(Action.DENY, host="blocked.example.test", proto=Proto.TCP, scope=f"profile:{BIDI}ci"),
    Rule(Action.ALLOW, host="api.example.test", path_prefix=f"/{OSC_TITLE}", proto=Proto.TCP),
]  # fmt: skip


def _write_session(home: Path, sid: str, entries: list[LogEntry], start: float) -> None:
    folder = home / "sessions" / sid
    folder.mkdir(parents=True)
    rec = {"id": sid, "command": ["sh", f"-c{OSC_TITLE}", f"echo {BIDI}hi"],
           "image": f"bash{CLEAR}", "mode": "audit", "start": start, "end": start + 60,
           "exit": 0}  # fmt: skip
    (folder / "session.json").write_text(json.dumps(rec))
    (folder / "flows.jsonl").write_text("".join(json.dumps(e.to_dict()) + "\n" for e in entries))


@pytest.fixture()
def home(home: Path) -> Path:
    _write_session(home, PROPOSAL_SID, PROPOSAL_ENTRIES, T0 - 100)
    _write_session(home, SID, ENTRIES, T0)  # the latest: `coderun log` shows it
    with RuleStore(home / "rules" / "rules.db") as store:
        store.add_many(RULES)
    return home


def _terminal(home: Path, *args: str, status: int = 0) -> str:
    code, out = run_on_terminal(coderun(*args), cli_env(home))
    assert code == status, out.decode(errors="replace")
    assert_inert(out)
    return out.decode()


def _piped(home: Path, *args: str, status: int = 0) -> tuple[str, str]:
    proc = run_piped(coderun(*args), cli_env(home))
    assert proc.returncode == status, proc.stderr.decode(errors="replace")
    return proc.stdout.decode(), proc.stderr.decode()


def _no_forged_line(text: str) -> None:
    lines = text.replace("\r\n", "\n").split("\n")
    assert not any(line.startswith(FORGED) for line in lines), text


# -- coderun log ------------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["terminal", "pipe"])
def test_log_text_shows_hostile_entries_inert(home: Path, where: str) -> None:
    if where == "terminal":
        out = _terminal(home, "log")
    else:
        out, err = _piped(home, "log")
        assert_inert(out.encode() + err.encode())
    _no_forged_line(out)
    # Shown, escaped visibly, not dropped.
    assert "\\x1b]0;pwned\\x07" in out
    assert "\\u202e" in out and "\\u200b" in out and "\\x9b2J" in out
    # The look-alike name is marked and paired with its ASCII form.
    assert PUNY_NAME in out and "[IDN]" in out


@pytest.mark.parametrize("where", ["terminal", "pipe"])
def test_log_summary_shows_hostile_hosts_inert(home: Path, where: str) -> None:
    if where == "terminal":
        out = _terminal(home, "log", "--summary")
    else:
        out, err = _piped(home, "log", "--summary")
        assert_inert(out.encode() + err.encode())
    _no_forged_line(out)
    assert "\\x1b]52;c;" in out
    assert "[IDN]" in out or "\\u" in out


def test_log_json_is_exact_and_parses_back(home: Path) -> None:
    out, _ = _piped(home, "log", "--json")
    got = [LogEntry.from_dict(json.loads(line)) for line in out.splitlines()]
    assert [e.to_dict() for e in got] == [e.to_dict() for e in ENTRIES]
    # On a terminal too: JSON escapes everything itself, so it is inert and still exact.
    code, raw = run_on_terminal(coderun("log", "--json"), cli_env(home))
    assert code == 0
    assert_inert(raw)
    lines = raw.decode().replace("\r\n", "\n").splitlines()
    assert [json.loads(line)["time"] for line in lines] == [e.time for e in ENTRIES]


def test_log_csv_piped_is_exact_valid_csv(home: Path) -> None:
    out, _ = _piped(home, "log", "--csv")
    rows = list(csv.DictReader(io.StringIO(out, newline="")))
    assert len(rows) == len(ENTRIES)
    assert rows[1]["names"] == f"{HOSTILE_HOST} {CYRILLIC_NAME}"
    assert rows[2]["names"] == f"evil.example.test\n{FORGED}"
    assert rows[3]["url"] == ENTRIES[3].url and rows[3]["method"] == ENTRIES[3].method
    assert rows[5]["message"] == ENTRIES[5].message


def test_log_csv_on_a_terminal_is_inert(home: Path) -> None:
    out = _terminal(home, "log", "--csv")
    assert "\\x1b]0;pwned\\x07" in out


# -- coderun sessions -------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["terminal", "pipe"])
def test_sessions_table_is_inert(home: Path, where: str) -> None:
    if where == "terminal":
        out = _terminal(home, "sessions")
    else:
        out, err = _piped(home, "sessions")
        assert_inert(out.encode() + err.encode())
    assert SID in out and "\\x1b]0;pwned\\x07" in out and "\\u202e" in out


def test_sessions_json_parses_back(home: Path) -> None:
    out, _ = _piped(home, "sessions", "--json")
    recs = {r["id"]: r for r in map(json.loads, out.splitlines())}
    assert recs[SID]["command"] == ["sh", f"-c{OSC_TITLE}", f"echo {BIDI}hi"]


# -- coderun rules ----------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["terminal", "pipe"])
def test_rules_list_is_inert(home: Path, where: str) -> None:
    if where == "terminal":
        out = _terminal(home, "rules", "list")
    else:
        out, err = _piped(home, "rules", "list")
        assert_inert(out.encode() + err.encode())
    assert "trusted\\x1b]0;pwned\\x07" in out and "\\u202e" in out
    assert f"{PUNY_NAME} ({CYRILLIC_NAME}) [IDN]" in out


def test_rules_list_json_is_exact(home: Path) -> None:
    out, _ = _piped(home, "rules", "list", "--json")
    notes = [r["note"] for r in json.loads(out)]
    assert RULES[0].note in notes


def test_rules_explain_is_inert(home: Path) -> None:
    out = _terminal(home, "rules", "explain", "api.example.test:443", "--path", f"/{OSC_TITLE}x")
    assert "\\x1b]0;pwned\\x07" in out
    out = _terminal(home, "rules", "explain", f"x{CLEAR}.example.test:80", status=1)
    assert "no rule matches" in out
    out = _terminal(home, "rules", "explain", f"{PUNY_NAME}:8443")
    assert "[IDN]" in out


def test_rules_export_piped_is_exact_and_inert_on_a_terminal(home: Path) -> None:
    out, _ = _piped(home, "rules", "export", "--json")
    assert [r["note"] for r in json.loads(out)["rules"]][0] == RULES[0].note
    _terminal(home, "rules", "export")


def test_from_session_proposal_is_inert_and_marks_idn(home: Path) -> None:
    out = _terminal(home, "rules", "from-session", PROPOSAL_SID)
    assert f"+ allow {PUNY_NAME}:443/tcp ({CYRILLIC_NAME}) [IDN]" in out
    assert "\\x1b]0;pwned\\x07" in out  # the stored path rule, shown as context


def test_export_to_a_terminal_is_inert(home: Path) -> None:
    _terminal(home, "export", "--format", "nftables", "--session", PROPOSAL_SID)
    _terminal(home, "export", "--format", "nftables")


# -- error messages ---------------------------------------------------------------------------


def test_errors_quoting_untrusted_strings_are_inert(home: Path, tmp_path: Path) -> None:
    bad = tmp_path / f"policy{OSC_TITLE}{BIDI}.toml"
    bad.write_text("[[rule]]\naction = 'allow'\nhost = 'x'\nport = 'many'\n")
    out = _terminal(home, "rules", "import", str(bad), status=2)
    assert "\\x1b]0;pwned\\x07" in out
    out = _terminal(home, "log", f"nope{CLIPBOARD}", status=1)
    assert "no session" in out
    out = _terminal(home, f"nope{CLEAR}", status=2)
    assert "No such command" in out
    out = _terminal(home, "rules", "add", "allow", f"x{OSC_TITLE}", status=2)
    assert "bad host" in out
