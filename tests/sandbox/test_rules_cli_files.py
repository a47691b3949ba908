"""``coderun rules`` with file rules: add allow-file/deny-file, list, explain PATH,
rm/disable, export/import round trip; through CliRunner against a temp CODERUN_HOME."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from sandbox.cli.rules import rules
from sandbox.paths import rules_db
from snitch.core.model import Action, Proto, Rule
from snitch.core.store import RuleStore

pytestmark = pytest.mark.usefixtures("home")


@pytest.fixture(autouse=True)
def user_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The person's home folder (``~``), apart from the coderun data dir."""
    home = tmp_path / "ann"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    return home


def run(*args: str) -> Result:
    return CliRunner().invoke(rules, list(args), catch_exceptions=False)


def stored() -> list[Rule]:
    with RuleStore(rules_db()) as s:
        return s.list()


def test_add_file_rules_stores_globs_as_typed() -> None:
    res = run("add", "allow-file", "~/.aws/*", "--access", "read", "--exe", "/usr/bin/aws*")
    assert res.exit_code == 0, res.output
    assert res.stdout == "added rule 1: allow-file ~/.aws/* (read) exe=/usr/bin/aws* (always)\n"
    assert run("add", "deny-file", "**/.env", "--priority", "2", "--scope", "profile:ci",
               "--for", "1h", "--note", "no env files").exit_code == 0  # fmt: skip
    a, b = stored()
    assert (a.action, a.proto, a.file, a.access, a.exe) == (
        Action.ALLOW, Proto.FILE, "~/.aws/*", "read", "/usr/bin/aws*")  # fmt: skip
    assert (a.host, a.cidr, a.port_lo) == (None, None, 0)
    assert (b.action, b.file, b.access, b.priority, b.scope) == (
        Action.DENY, "**/.env", None, 2, "profile:ci")  # fmt: skip
    assert b.expires_at is not None and b.note == "no env files"


def test_a_glob_spelling_out_home_gets_a_hint(user_home: Path) -> None:
    res = run("add", "deny-file", f"{user_home}/.ssh/*")
    assert res.exit_code == 0
    assert "did you mean ~/.ssh/*?" in res.stderr
    assert stored()[0].file == f"{user_home}/.ssh/*"  # stored as typed all the same


@pytest.mark.parametrize(
    "args",
    [
        ["add", "allow-file", "~/x", "--port", "443"],
        ["add", "allow-file", "~/x", "--proto", "tcp"],
        ["add", "allow-file", "~/x", "--path", "/v1/"],
        ["add", "allow-file", "~/x", "--access", "exec"],
        ["add", "allow-file", ".env"],  # a glob is matched whole: must start with / ~/ or *
        ["add", "allow-file", ""],
        ["add", "allow-file", "~/x", "--exe", "curl"],
        ["add", "allow", "a.example.test", "--access", "read"],
        ["add", "allow", "a.example.test", "--proto", "file"],
        ["explain", "~/x", "--proto", "tcp"],
        ["explain", "~/x", "--path", "/v1/"],
        ["explain", "a.example.test:443", "--access", "read"],
    ],
)
def test_file_usage_errors_exit_2(args: list[str]) -> None:
    res = run(*args)
    assert res.exit_code == 2, res.output
    assert stored() == []


def test_list_shows_the_kind_glob_and_access() -> None:
    run("add", "allow-file", "~/.aws/*", "--access", "read")
    run("add", "allow", "api.example.test", "--port", "443", "--proto", "tcp")
    run("add", "deny-file", "/work/**", "--exe", "/usr/bin/curl")
    lines = run("list").stdout.splitlines()
    assert lines[0].split()[:5] == ["ID", "ACTION", "TARGET", "PORT", "PROTO"]
    assert lines[1].split()[:6] == ["1", "allow-file", "~/.aws/*", "(read)", "-", "file"]
    assert lines[2].split()[:5] == ["2", "allow", "api.example.test", "443", "tcp"]
    assert lines[3].split()[:5] == ["3", "deny-file", "/work/**", "exe=/usr/bin/curl", "-"]
    d = json.loads(run("list", "--json").stdout)
    assert [(r["proto"], r["file"], r["access"]) for r in d] == [
        ("file", "~/.aws/*", "read"), ("tcp", None, None), ("file", "/work/**", None)]  # fmt: skip


def test_list_escapes_a_hostile_glob_and_note() -> None:
    run("add", "allow-file", "~/a\x1b[2Jb", "--note", "n\x07")
    out = run("list").stdout
    assert "\x1b" not in out and "\x07" not in out
    assert "~/a\\x1b[2Jb" in out


def test_explain_a_path_picks_the_most_specific_glob(user_home: Path) -> None:
    run("add", "allow-file", "~/.aws/*", "--access", "read")
    run("add", "deny-file", "~/.aws/credentials")
    run("add", "allow", "*")  # a network rule never matches a file
    res = run("explain", str(user_home / ".aws" / "credentials"))
    assert res.exit_code == 0, res.output
    assert res.stdout.splitlines()[:3] == [
        "file: ~/.aws/credentials (read)",
        "deny: deny-file ~/.aws/credentials",
        "why: rule 2 wins: a longer path prefix (or a more specific file glob)",
    ]
    res = run("explain", "~/.aws/config", "--json")
    d = json.loads(res.stdout)
    assert d["query"]["proto"] == "file" and d["query"]["file"] == "~/.aws/config"
    assert d["decision"]["rule_id"] == 1
    assert [m["rule"]["id"] for m in d["matches"]] == [1]


def test_explain_access_and_program(user_home: Path) -> None:
    run("add", "allow-file", "~/.aws/*", "--access", "read")
    run("add", "allow-file", "~/.aws/config", "--exe", "/usr/bin/aws")
    assert run("explain", "~/.aws/config", "--access", "write").exit_code == 1
    res = run("explain", "~/.aws/config", "--access", "write", "--exe", "/usr/bin/aws")
    assert res.exit_code == 0 and "allow: allow-file ~/.aws/config exe=/usr/bin/aws" in res.stdout


def test_explain_a_relative_path_is_taken_from_here(
    user_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (user_home / "proj").mkdir()
    monkeypatch.chdir(user_home / "proj")
    run("add", "deny-file", "**/.env")
    res = run("explain", "./.env")
    assert res.exit_code == 0
    assert res.stdout.startswith("file: ~/proj/.env (read)\ndeny: deny-file **/.env\n")


def test_explain_of_an_endpoint_still_works() -> None:
    run("add", "allow", "api.example.test", "--port", "443", "--proto", "tcp")
    run("add", "allow-file", "**")
    res = run("explain", "api.example.test:443")
    assert res.exit_code == 0
    assert res.stdout.startswith("allow: allow api.example.test:443/tcp\n")
    assert "**" not in res.stdout


def test_rm_and_disable_file_rules() -> None:
    run("add", "allow-file", "~/.aws/*")
    run("add", "deny-file", "~/.ssh/*")
    assert run("disable", "1").exit_code == 0
    assert run("explain", "~/.aws/config").exit_code == 1
    assert run("rm", "2").exit_code == 0
    assert [(r.id, r.enabled) for r in stored()] == [(1, False)]


def test_export_import_round_trip(tmp_path: Path) -> None:
    run("add", "allow-file", "~/.aws/*", "--access", "read", "--note", "aws")
    run("add", "allow", "api.example.test", "--port", "443", "--proto", "tcp")
    run("add", "deny-file", "**/.env", "--exe", "/usr/bin/*", "--scope", "image:py")
    out = tmp_path / "p.toml"
    assert run("export", str(out)).exit_code == 0
    text = out.read_text()
    assert '[[file]]\nallow = "~/.aws/*"\naccess = "read"\n' in text
    assert '[[file]]\ndeny = "**/.env"\nexe = "/usr/bin/*"\nscope = "image:py"\n' in text
    for r in stored():
        assert r.id is not None and run("rm", str(r.id)).exit_code == 0
    res = run("import", str(out))
    assert res.exit_code == 0 and "imported 3 rules" in res.stdout
    again = tmp_path / "q.toml"
    run("export", str(again))
    assert again.read_text() == text
    res = run("import", str(out))  # everything already there: all duplicates
    assert "imported 0 rules" in res.stdout and "(3 duplicates skipped)" in res.stdout


def test_a_bad_file_table_is_named_with_its_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[[file]]\nallow = "~/.aws/*"\n\n[[file]]\ndeny = "~/x"\naccess = "all"\n')
    res = run("import", str(bad))
    assert res.exit_code == 2
    assert f"{bad}:6:1: file 2: bad access 'all' (want read or write)" in res.output
    assert stored() == []
