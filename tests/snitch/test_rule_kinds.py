"""File rules, request-level (method), per-program (exe) and label-scoped rules."""

from __future__ import annotations

import pytest

from snitch.core.grammar import check_label
from snitch.core.model import Action, Proto, Query, Rule
from snitch.core.pathgrammar import normalize_methods, path_glob_matches
from snitch.core.policy import Policy, check_rule

NOW = 1_700_000_000.0
ALLOW, DENY = Action.ALLOW, Action.DENY


def rule(action: Action, rid: int, **kw: object) -> Rule:
    return Rule(action, id=rid, created=NOW, **kw)  # type: ignore[arg-type]


def fq(path: str, access: str = "read", exe: str | None = None) -> Query:
    return Query(Proto.FILE, file=path, access=access, exe=exe)


def decided(rules: list[Rule], q: Query) -> int | None:
    d = Policy(rules).decide(q, now=NOW)
    return None if d is None else d.rule_id


@pytest.mark.parametrize(
    ("glob", "path", "matches"),
    [
        ("~/.aws/*", "~/.aws/credentials", True),
        ("~/.aws/*", "~/.aws/sso/cache", False),  # * stays in one segment
        ("~/.aws/**", "~/.aws/sso/cache", True),
        ("**/.env", ".env", True),
        ("**/.env", "/work/app/.env", True),
        ("**/.env", "/work/app/.env.local", False),
        ("/work/*.txt", "/work/a.txt", True),
        ("/work/*.txt", "/work/d/a.txt", False),
        ("/work/[ab].txt", "/work/b.txt", True),
        ("/work/[!ab].txt", "/work/b.txt", False),
        ("/work/?.txt", "/work/ab.txt", False),
    ],
)
def test_path_globs(glob: str, path: str, matches: bool) -> None:
    assert path_glob_matches(glob, path) is matches


def test_file_rules_match_file_queries_only_and_network_rules_never_files() -> None:
    file_rule = rule(ALLOW, 1, proto=Proto.FILE, file="**")
    any_net = rule(ALLOW, 2)  # proto any: every network flow, never a file
    assert decided([file_rule, any_net], fq("/work/x")) == 1
    assert decided([any_net], fq("/work/x")) is None
    assert decided([file_rule], Query(Proto.TCP, "192.0.2.1", 443)) is None
    assert decided([file_rule], Query(Proto.DNS, None, 0, ("a.example.test",))) is None


def test_the_more_specific_glob_wins_then_deny() -> None:
    aws = rule(ALLOW, 1, proto=Proto.FILE, file="~/.aws/*")
    creds = rule(DENY, 2, proto=Proto.FILE, file="~/.aws/credentials")
    everything = rule(ALLOW, 3, proto=Proto.FILE, file="**")
    rules = [everything, aws, creds]
    assert decided(rules, fq("~/.aws/credentials")) == 2
    assert decided(rules, fq("~/.aws/config")) == 1
    assert decided(rules, fq("/etc/hosts")) == 3
    tie = [
        rule(ALLOW, 4, proto=Proto.FILE, file="~/.aws/*"),
        rule(DENY, 5, proto=Proto.FILE, file="~/.aws/*"),
    ]
    assert decided(tie, fq("~/.aws/config")) == 5


def test_access_narrows_a_file_rule() -> None:
    read_only = rule(ALLOW, 1, proto=Proto.FILE, file="/work/**", access="read")
    assert decided([read_only], fq("/work/a", "read")) == 1
    assert decided([read_only], fq("/work/a", "write")) is None


def test_method_rules_need_a_seen_request() -> None:
    get = rule(ALLOW, 1, host="api.example.test", path_prefix="/v1/", method="GET,HEAD")
    post = Query(Proto.TCP, "192.0.2.1", 443, ("api.example.test",), path="/v1/x", method="POST")
    head = Query(Proto.TCP, "192.0.2.1", 443, ("api.example.test",), path="/v1/x", method="HEAD")
    connection = Query(Proto.TCP, "192.0.2.1", 443, ("api.example.test",))
    assert decided([get], head) == 1
    assert decided([get], post) is None
    assert decided([get], connection) is None
    # a method rule beats the same rule without one
    deny_all = rule(DENY, 2, host="api.example.test", path_prefix="/v1/")
    assert decided([deny_all, get], head) == 1
    assert decided([deny_all, get], post) == 2


def test_exe_rules_tell_programs_apart() -> None:
    curl = rule(ALLOW, 1, host="a.example.test", exe="/usr/bin/curl")
    anyone = rule(DENY, 2, host="a.example.test")
    q = Query(Proto.TCP, "192.0.2.1", 443, ("a.example.test",), exe="/usr/bin/curl")
    py = Query(Proto.TCP, "192.0.2.1", 443, ("a.example.test",), exe="/usr/bin/python3.11")
    unknown = Query(Proto.TCP, "192.0.2.1", 443, ("a.example.test",))
    assert decided([anyone, curl], q) == 1
    assert decided([anyone, curl], py) == 2
    assert decided([anyone, curl], unknown) == 2  # not attributed: no exe rule applies
    glob = rule(ALLOW, 3, host="a.example.test", exe="/usr/bin/python3*")
    assert decided([anyone, glob], py) == 3


def test_label_scopes() -> None:
    ci = rule(ALLOW, 1, host="a.example.test", scope="label:team=ci")
    q = Query(Proto.TCP, "192.0.2.1", 443, ("a.example.test",), labels=("team=ci", "x=y"))
    other = Query(Proto.TCP, "192.0.2.1", 443, ("a.example.test",), labels=("team=web",))
    assert decided([ci], q) == 1
    assert decided([ci], other) is None


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"proto": Proto.FILE}, "needs a path glob"),
        ({"proto": Proto.FILE, "file": "/a", "host": "a.example.test"}, "not a host"),
        ({"proto": Proto.FILE, "file": "/a", "access": "exec"}, "bad access"),
        ({"proto": Proto.FILE, "file": "/a", "method": "GET"}, "no HTTP method"),
        ({"file": "/a"}, "needs a file rule"),
        ({"host": "a.example.test", "method": "get"}, "bad method list"),
        ({"host": "a.example.test", "exe": "curl"}, "bad executable"),
        ({"scope": "label:bad key=x"}, "bad scope"),
    ],
)
def test_bad_rules_are_refused(kw: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        check_rule(Rule(ALLOW, **kw))  # type: ignore[arg-type]


def test_methods_and_labels_parse() -> None:
    assert normalize_methods("post, get,GET") == "GET,POST"
    with pytest.raises(ValueError, match="unknown HTTP method 'FETCH'"):
        normalize_methods("fetch")
    assert check_label("app.kubernetes.io/name=build") == "app.kubernetes.io/name=build"
    with pytest.raises(ValueError, match="bad label"):
        check_label("no-equals")


def test_describe_the_new_kinds() -> None:
    assert Rule(ALLOW, proto=Proto.FILE, file="~/.aws/*", access="read").describe() == (
        "allow-file ~/.aws/* (read)"
    )
    r = Rule(DENY, host="a.example.test", path_prefix="/v1", method="POST", exe="/usr/bin/curl")
    assert r.describe() == "deny a.example.test/any path /v1 [POST] exe=/usr/bin/curl"
