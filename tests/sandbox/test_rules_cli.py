"""``coderun rules``: the click group driven through CliRunner against a temp CODERUN_HOME."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from sandbox.cli.rules import parse_endpoint, parse_target, rules
from sandbox.paths import rules_db
from snitch.core.model import Action, Proto, Rule
from snitch.core.store import RuleStore

pytestmark = pytest.mark.usefixtures("home")


def run(*args: str) -> Result:
    return CliRunner().invoke(rules, list(args), catch_exceptions=False)


def stored() -> list[Rule]:
    with RuleStore(rules_db()) as s:
        return s.list()


def test_add_detects_the_target_kind() -> None:
    assert run("add", "allow", "api.example.test", "--port", "443", "--proto", "tcp").exit_code == 0
    assert run("add", "deny", "*.Example.test").exit_code == 0
    assert run("add", "allow", "192.0.2.7").exit_code == 0
    assert run("add", "allow", "2001:db8::/32", "--port", "8000-8100").exit_code == 0
    assert run("add", "deny", "*").exit_code == 0
    got = [(r.host, r.cidr, r.port_lo, r.port_hi, r.proto) for r in stored()]
    assert got == [
        ("api.example.test", None, 443, 443, Proto.TCP),
        ("*.example.test", None, 0, 0, Proto.ANY),
        (None, "192.0.2.7", 0, 0, Proto.ANY),
        (None, "2001:db8::/32", 8000, 8100, Proto.ANY),
        (None, None, 0, 0, Proto.ANY),
    ]


def test_add_with_lifetime_note_scope_json() -> None:
    before = time.time()
    res = run("add", "allow", "api.example.test", "--port", "443", "--proto", "tcp",
              "--for", "5m", "--note", "ci", "--scope", "profile:web", "--priority", "2",
              "--json")  # fmt: skip
    assert res.exit_code == 0, res.output
    d = json.loads(res.stdout)
    assert d["id"] == 1 and d["note"] == "ci" and d["scope"] == "profile:web"
    (r,) = stored()
    assert r.expires_at is not None and before + 299 < r.expires_at < time.time() + 301
    assert r.source == "cli" and r.priority == 2
    assert run("add", "allow", "x.test", "--session", "s1").exit_code == 0
    assert stored()[1].session == "s1"


@pytest.mark.parametrize(
    "args",
    [
        ["add", "permit", "a.test"],
        ["add", "allow", "a..test"],
        ["add", "allow", "10.0.0.1/8"],
        ["add", "allow", "a.test", "--port", "99999"],
        ["add", "allow", "a.test", "--for", "soon"],
        ["add", "allow", "a.test", "--for", "5m", "--session", "s"],
        ["add", "allow", "a.test", "--scope", "team:x"],
        ["add", "allow", "a.test", "--proto", "dns", "--port", "53"],
        ["rm"],
        ["rm", "abc"],
        ["explain", "a.test:http"],
    ],
)
def test_usage_errors_exit_2(args: list[str]) -> None:
    res = run(*args)
    assert res.exit_code == 2, res.output
    assert stored() == []


def test_list_rm_enable_disable() -> None:
    run("add", "allow", "a.test")
    run("add", "deny", "b.test", "--note", "nope")
    res = run("list")
    assert res.exit_code == 0
    assert "a.test" in res.stdout and "nope" in res.stdout and "ID" in res.stdout
    assert run("disable", "1").exit_code == 0
    rows = json.loads(run("list", "--json").stdout)
    assert [(r["id"], r["enabled"]) for r in rows] == [(1, False), (2, True)]
    assert [r["id"] for r in json.loads(run("list", "--json", "--enabled-only").stdout)] == [2]
    assert run("enable", "1").exit_code == 0
    assert all(r.enabled for r in stored())
    res = run("rm", "1", "7")
    assert res.exit_code == 1 and "no rule with id 7" in res.output
    assert [r.id for r in stored()] == [2]
    assert run("enable", "9").exit_code == 1
    assert run("disable", "9").exit_code == 1
    assert run("rm", "2").exit_code == 0
    assert "no rules" in run("list").stdout


def test_explain() -> None:
    run("add", "allow", "*.example.test", "--port", "443", "--proto", "tcp")
    run("add", "deny", "ads.example.test")
    run("add", "allow", "192.0.2.0/24", "--port", "53", "--proto", "udp")
    res = run("explain", "api.example.test:443")
    assert res.exit_code == 0
    assert res.stdout.startswith("allow: allow *.example.test:443/tcp")
    res = run("explain", "ads.example.test:443", "--json")
    d = json.loads(res.stdout)
    assert res.exit_code == 0 and d["decision"]["action"] == "deny"
    assert d["decision"]["rule_id"] == 2 and [m["rule"]["id"] for m in d["matches"]] == [2, 1]
    assert "exact host beats wildcard" in d["reason"]
    assert run("explain", "api.example.test", "--proto", "dns").exit_code == 0  # may connect
    assert run("explain", "192.0.2.9:53", "--proto", "udp").exit_code == 0
    res = run("explain", "198.51.100.1:443")
    assert res.exit_code == 1 and "no rule matches" in res.stdout
    res = run("explain", "other.test", "--json")
    assert res.exit_code == 1 and json.loads(res.stdout)["decision"] is None


def test_blocklist_import_and_explain(tmp_path: Path) -> None:
    hosts = tmp_path / "hosts.txt"
    hosts.write_text("# list\n0.0.0.0 ads.example.test\n127.0.0.1 localhost\n203.0.113.0/24\n")
    res = run("import", "--blocklist", str(hosts))
    assert res.exit_code == 0 and "2 new entries" in res.stdout and "1 lines skipped" in res.stdout
    assert stored() == []
    assert "blocklist: 2 entries" in run("list").stdout
    res = run("explain", "x.ads.example.test:443", "--json")
    assert res.exit_code == 0 and json.loads(res.stdout)["decision"]["action"] == "deny"
    res = run("explain", "ads.example.test:443", "--json")  # the listed name itself
    assert res.exit_code == 0 and json.loads(res.stdout)["decision"]["action"] == "deny"
    assert run("explain", "203.0.113.5:80").exit_code == 0
    assert "0 new entries, 2 already listed" in run("import", "--blocklist", str(hosts)).stdout


POLICY = """\
blocklist = ["tracker.example.test"]

[[rule]]
action = "allow"
host = "*.example.test"
port = 443
proto = "tcp"
note = "from a file"

[[rule]]
action = "deny"
cidr = "10.0.0.0/8"
lifetime = "2d"
"""


def test_import_export_import(tmp_path: Path) -> None:
    src = tmp_path / "in.toml"
    src.write_text(POLICY)
    res = run("import", str(src))
    assert res.exit_code == 0, res.output
    assert "imported 2 rules" in res.stdout and "1 blocklist entries" in res.stdout
    again = run("import", str(src)).stdout  # the 2d rule gets a new expiry: not a duplicate
    assert "imported 1 rules" in again and "1 duplicates skipped" in again
    run("rm", "3")
    out = tmp_path / "out.toml"
    assert run("export", str(out), "--blocklist").exit_code == 0
    exported = out.read_text()
    assert run("export", "--blocklist").stdout == exported
    # a fresh store loaded from the export holds the same rules and blocklist
    first = [r.to_dict() for r in stored()]
    rules_db().unlink()
    assert run("import", str(out)).exit_code == 0
    reloaded = [r.to_dict() for r in stored()]
    for r in first + reloaded:
        r.pop("id")
        r["created"] = round(r["created"], 6)
        r["expires_at"] = r["expires_at"] and round(r["expires_at"], 6)
    assert reloaded == first
    assert run("export", "--blocklist").stdout == exported
    d = json.loads(run("export", "--json", "--blocklist").stdout)
    assert len(d["rules"]) == 2 and d["blocklist"] == ["tracker.example.test"]


def test_malformed_policy_leaves_the_store_unchanged(tmp_path: Path) -> None:
    run("add", "allow", "keep.test")
    with RuleStore(rules_db()) as s:
        gen = s.generation()
    bad = tmp_path / "bad.toml"
    bad.write_text(POLICY + '\n[[rule]]\naction = "allow"\nport = "443-80"\n')
    res = run("import", str(bad))
    assert res.exit_code == 2
    assert f"{bad}:17:1: rule 3: bad port" in res.output
    assert [r.host for r in stored()] == ["keep.test"]
    with RuleStore(rules_db()) as s:
        assert s.generation() == gen and s.blocklist_count() == 0


def test_corrupt_store_exits_3(home: Path) -> None:
    rules_db().write_bytes(b"garbage" * 1000)
    res = run("list")
    assert res.exit_code == 3 and "rules.db" in res.output and "corrupt" in res.output
    assert rules_db().read_bytes() == b"garbage" * 1000


def test_parsers() -> None:
    assert parse_target("*.a.test") == ("*.a.test", None)
    assert parse_target("any") == (None, None)
    assert parse_target("10.0.0.0/8") == (None, "10.0.0.0/8")
    assert parse_endpoint("a.test:443") == ("a.test", 443)
    assert parse_endpoint("a.test") == ("a.test", 0)
    assert parse_endpoint("[2001:db8::1]:443") == ("2001:db8::1", 443)
    assert parse_endpoint("2001:db8::1") == ("2001:db8::1", 0)
    with pytest.raises(ValueError):
        parse_target("10.0.0/33")


def test_rules_made_elsewhere_are_listed() -> None:
    with RuleStore(rules_db()) as s:
        s.add(Rule(Action.ALLOW, host="p.test", source="prompt", once_key="tcp:a:1->b:2"))
    res = run("list")
    assert "once" in res.stdout and "prompt" in res.stdout


def test_exe_rules_are_added_listed_and_explained() -> None:
    res = run("add", "allow", "api.example.test", "--port", "443", "--exe", "/usr/bin/curl")
    assert res.exit_code == 0 and "exe=/usr/bin/curl" in res.stdout
    run("add", "deny", "api.example.test")
    assert [r.exe for r in stored()] == ["/usr/bin/curl", None]
    assert "exe=/usr/bin/curl" in run("list").stdout
    curl = run("explain", "api.example.test:443", "--exe", "/usr/bin/curl")
    assert curl.exit_code == 0 and curl.stdout.startswith("allow: ")
    python = run("explain", "api.example.test:443", "--exe", "/usr/bin/python3.13")
    assert python.stdout.startswith("deny: ")
    assert run("explain", "api.example.test:443").stdout.startswith("deny: ")  # unknown program
    bad = run("add", "allow", "api.example.test", "--exe", "curl")
    assert bad.exit_code == 2 and "absolute path or a glob" in bad.output


def test_add_a_method_rule_with_the_star_path_form_and_explain_a_request() -> None:
    res = run("add", "allow", "api.example.test", "--method", "get,head", "--path", "/v1/*")
    assert res.exit_code == 0, res.output
    assert "allow api.example.test/any path /v1/" in res.output and "[GET,HEAD]" in res.output
    assert run("add", "deny", "api.example.test", "--path", "/v1/").exit_code == 0
    (allow, deny) = stored()
    assert (allow.path_prefix, allow.method, deny.method) == ("/v1/", "GET,HEAD", None)
    assert "api.example.test/v1/ [GET,HEAD]" in run("list").output
    got = run("explain", "api.example.test:80", "--method", "GET", "--path", "/v1/items")
    assert got.exit_code == 0 and got.output.startswith("allow:"), got.output
    assert "method GET,HEAD" in got.output
    post = run("explain", "api.example.test:80", "--method", "post", "--path", "/v1/items")
    assert post.output.startswith("deny:"), post.output
    bare = run("explain", "api.example.test:80")  # a connection: no request rule matches it
    assert bare.exit_code == 1 and "no rule matches" in bare.output


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["--method", "FETCH"], "unknown HTTP method 'FETCH'"),
        (["--path", "v1"], "bad path"),
        (["--path", "/v*/x"], "bad path"),
    ],
)
def test_add_refuses_a_bad_method_or_path(args: list[str], error: str) -> None:
    res = CliRunner().invoke(rules, ["add", "allow", "api.example.test", *args])
    assert res.exit_code == 2 and error in res.output and stored() == []
