"""Request rules (``--method``, ``--path``): their grammar, policy files, exports, and the
connections and lookups that go through so their requests can be decided one by one."""

from __future__ import annotations

from pathlib import Path

import pytest

from snitch.core.model import Action, Mode, Proto, Query, Rule
from snitch.core.pathgrammar import normalize_path_prefix, request_folder
from snitch.core.policyfile import PolicyError, dump_policy, loads_policy
from snitch.review.export.common import prepare
from tests.fakes import DnsUpstream, Packet, answer_a, forwarder, gate, tcp


@pytest.mark.parametrize(
    ("typed", "prefix"), [("/v1/", "/v1/"), ("/v1/*", "/v1/"), ("/*", "/"), ("/", "/")]
)
def test_a_trailing_star_is_the_prefix_form(typed: str, prefix: str) -> None:
    assert normalize_path_prefix(typed) == prefix


@pytest.mark.parametrize(
    "bad", ["v1/", "", "*", "/v*/x", "/v1/?", "/a b", "/x\r\nX-Y: 1", "/\x1b["]
)
def test_a_path_prefix_has_no_other_wildcard_space_or_control_character(bad: str) -> None:
    with pytest.raises(ValueError, match="bad path"):
        normalize_path_prefix(bad)


@pytest.mark.parametrize(
    ("path", "folder"),
    [("/v1/items/7?x=/y", "/v1/items/"), ("/v1/", "/v1/"), ("/", "/"), ("/x", "/"), ("*", "/")],
)
def test_a_requests_folder(path: str, folder: str) -> None:
    assert request_folder(path) == folder


def test_policy_files_carry_methods_and_accept_the_star_form() -> None:
    text = """
[[rule]]
action = "allow"
host = "api.example.test"
path = "/v1/*"
method = "get,head"
"""
    (rule,) = loads_policy(text, "p.toml").rules
    assert (rule.path_prefix, rule.method) == ("/v1/", "GET,HEAD")
    (again,) = loads_policy(dump_policy([rule]), "again.toml").rules
    assert (again.path_prefix, again.method, again.host) == ("/v1/", "GET,HEAD", "api.example.test")
    with pytest.raises(PolicyError, match=r"p.toml:6:.*unknown HTTP method 'FETCH'"):
        loads_policy(text.replace("get,head", "fetch"), "p.toml")


def test_a_firewall_export_leaves_method_rules_out() -> None:
    rules = [Rule(Action.ALLOW, host="a.example.test", method="GET"),
             Rule(Action.ALLOW, host="b.example.test")]  # fmt: skip
    prepared = prepare(rules)
    assert [r.host for r in prepared.rules] == ["b.example.test"]
    assert any("an HTTP method cannot be matched" in w for w in prepared.warnings)


REQUEST_RULES = [
    Rule(Action.ALLOW, host="api.example.test", path_prefix="/v1/", method="GET"),
    Rule(Action.DENY, host="api.example.test", path_prefix="/v1/"),
]


@pytest.mark.parametrize("mode", [Mode.ENFORCE, Mode.ASK])
def test_a_connection_to_a_host_with_request_rules_goes_through_where_requests_are_seen(
    tmp_path: Path, mode: Mode
) -> None:
    g, logged = gate(tmp_path, mode, list(REQUEST_RULES))  # policy-file rules: ids -1, -2
    g.request_ports = frozenset({80})
    g.names.add("198.51.100.5", "api.example.test", 60)
    g.names.add("198.51.100.6", "other.example.test", 60)
    web, tls = Packet(tcp("198.51.100.5", 80)), Packet(tcp("198.51.100.5", 443, sport=2))
    other = Packet(tcp("198.51.100.6", 80, sport=3))
    for pkt in (web, tls, other):
        g.on_packet(pkt)
    assert web.verdict == "accepted"
    line = logged[0]
    assert line["verdict"] == "allow" and line["rule_id"] == -1
    assert "its HTTP requests are decided one by one" in line["reason"]
    # Where requests are not seen (TLS without interception), and for other hosts: as before.
    held_or_refused = "" if mode is Mode.ASK else "refused"  # held: no verdict yet
    assert (tls.verdict, other.verdict) == (held_or_refused, held_or_refused)


def test_a_connection_rule_still_decides_before_request_rules(tmp_path: Path) -> None:
    rules = [*REQUEST_RULES, Rule(Action.DENY, host="api.example.test", port_lo=80, port_hi=80)]
    g, logged = gate(tmp_path, Mode.ENFORCE, rules)
    g.request_ports = frozenset({80})
    g.names.add("198.51.100.5", "api.example.test", 60)
    pkt = Packet(tcp("198.51.100.5", 80))
    g.on_packet(pkt)
    assert pkt.verdict == "refused" and logged[0]["rule_id"] == -3


def test_request_rules_decide_requests_by_method_and_path(tmp_path: Path) -> None:
    g, _ = gate(tmp_path, Mode.ENFORCE, list(REQUEST_RULES))

    def decide(method: str, path: str) -> tuple[str, int | None] | None:
        d = g.rules.decide(Query(Proto.TCP, "198.51.100.5", 80, ("api.example.test",),
                                 path=path, method=method))  # fmt: skip
        return None if d is None else (str(d.action), d.rule_id)

    assert decide("GET", "/v1/x") == ("allow", -1)
    assert decide("POST", "/v1/x") == ("deny", -2)
    assert decide("GET", "/v2/x") is None


@pytest.mark.parametrize("mode", [Mode.ENFORCE, Mode.ASK])
def test_a_name_with_request_rules_may_be_looked_up(mode: Mode) -> None:
    fwd, _ = forwarder(list(REQUEST_RULES), DnsUpstream(answer_a("198.51.100.5")), mode)
    found = fwd.decide("api.example.test")
    assert found is not None and found.action is Action.ALLOW and found.rule_id == -1
    other = fwd.decide("other.example.test")
    assert other is None if mode is Mode.ASK else other is not None and other.action is Action.DENY
