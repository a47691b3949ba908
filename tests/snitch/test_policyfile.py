"""Policy files: the TOML format, identity round trips, and FILE:LINE:COL errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from snitch.core.model import Action, Proto, Rule
from snitch.core.policyfile import (
    PolicyError,
    dump_policy,
    load_policy,
    load_policy_file,
    loads_policy,
)

NOW = 1_700_000_000.0

# Every field, in the writer's own layout, so dump(load(text)) must give the text back.
CANONICAL = """\
# coderun policy file: load with `coderun rules import FILE`

blocklist = [
  "ads.example.com",
  "203.0.113.0/24",
]

[[rule]]
action = "allow"
host = "*.example.com"
port = "8000-8100"
proto = "tcp"
scope = "profile:web"
priority = 5
path = "/v1/"
expires_at = 2030-01-01T00:00:00Z
enabled = false
source = "policy"
note = "a \\"quoted\\" note\\twith a tab and \\\\ and é"
created = 2024-05-01T12:00:00.250000Z
hits = 12
last_hit = 2024-05-02T08:30:00Z

[[rule]]
action = "deny"
cidr = "10.0.0.0/8"
port = 443
proto = "any"
lifetime = "session"
session = "s-123"
source = "cli"
created = 2024-05-01T12:00:00Z

[[rule]]
action = "allow"
host = "api.example.test"
proto = "dns"
scope = "image:python"
priority = -1
source = "prompt"
created = 2024-05-01T12:00:00Z

[[rule]]
action = "deny"
cidr = "2001:db8::1"
proto = "udp"
source = "import"
created = 2024-05-01T12:00:00Z
"""


def write(tmp_path: Path, text: str, name: str = "policy.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_canonical_file_is_a_fixed_point(tmp_path: Path) -> None:
    first = load_policy_file(write(tmp_path, CANONICAL), now=NOW)
    assert len(first.rules) == 4
    assert first.blocklist == ["ads.example.com", "203.0.113.0/24"]
    assert dump_policy(first.rules, first.blocklist) == CANONICAL


def test_import_export_import_is_identity(tmp_path: Path) -> None:
    first = load_policy_file(write(tmp_path, CANONICAL), now=NOW)
    text = dump_policy(first.rules, first.blocklist)
    second = load_policy_file(write(tmp_path, text, "again.toml"), now=NOW + 999)
    assert [r.to_dict() for r in second.rules] == [r.to_dict() for r in first.rules]
    assert second.blocklist == first.blocklist


def test_fields_are_read_right(tmp_path: Path) -> None:
    a, b, c, d = load_policy(write(tmp_path, CANONICAL), now=NOW)
    assert (a.action, a.host, a.port_lo, a.port_hi, a.proto) == (
        Action.ALLOW, "*.example.com", 8000, 8100, Proto.TCP,
    )  # fmt: skip
    assert (a.scope, a.priority, a.path_prefix, a.enabled, a.hits) == (
        "profile:web", 5, "/v1/", False, 12,
    )  # fmt: skip
    assert a.note == 'a "quoted" note\twith a tab and \\ and é'
    assert a.expires_at == 1893456000.0 and a.created == 1714564800.25
    assert a.last_hit == 1714638600.0
    assert (b.cidr, b.port_lo, b.session, b.expires_at) == ("10.0.0.0/8", 443, "s-123", None)
    assert (c.proto, c.scope, c.priority) == (Proto.DNS, "image:python", -1)
    assert d.cidr == "2001:db8::1" and d.id is None and d.once_key is None


def test_loose_forms_normalise_and_round_trip(tmp_path: Path) -> None:
    text = """
[[rule]]
action = "allow"
host = "API.Example.TEST."
port = "443"
lifetime = "1h"
created = 1714564800.5

[[rule]]
action = "deny"
cidr = "192.0.2.7/32"
port = "any"
expires_at = 1893456000
last_hit = 2024-05-02T08:30:00
"""
    a, b = load_policy(write(tmp_path, text), now=NOW)
    assert (a.host, a.port_lo, a.port_hi, a.expires_at, a.created) == (
        "api.example.test", 443, 443, NOW + 3600, 1714564800.5,
    )  # fmt: skip
    assert a.source == "policy"
    assert (b.cidr, b.port_lo, b.expires_at, b.last_hit) == (
        "192.0.2.7", 0, 1893456000.0, 1714638600.0,
    )  # fmt: skip
    again = loads_policy(dump_policy([a, b]), now=NOW + 50).rules
    assert [r.to_dict() for r in again] == [a.to_dict(), b.to_dict()]


def test_defaults(tmp_path: Path) -> None:
    (r,) = load_policy(write(tmp_path, '[[rule]]\naction = "deny"\n'), now=NOW)
    assert r == Rule(Action.DENY, source="policy", created=NOW)


def test_once_rules_are_not_exported() -> None:
    text = dump_policy([Rule(Action.ALLOW, host="a.test", once_key="tcp:1:2->3:4", created=NOW)])
    assert "[[rule]]" not in text and "1 once-rule(s) not exported" in text
    assert loads_policy(text).rules == []


@pytest.mark.parametrize(
    ("text", "line", "col", "what"),
    [
        # TOML syntax: position from tomllib
        ('[[rule]]\naction = "allow\n', 2, 16, "Illegal character"),
        ('[[rule]]\naction = "allow"\nport = \n', 3, 8, "Invalid value"),
        ('[[rule]]\naction = "allow"\naction = "deny"\n', 3, 16, "Cannot overwrite"),
        # semantic errors: position of the offending key
        ('[[rule]]\naction = "alow"\n', 2, 1, "unknown action 'alow'"),
        ('[[rule]]\naction = "allow"\n\n[[rule]]\naction = "allow"\n  cidr = "10.0.0.1/8"\n',
         6, 3, "rule 2: bad address or CIDR"),
        ('[[rule]]\naction = "allow"\nhots = "a.test"\n', 3, 1, "unknown key 'hots'"),
        ('[[rule]]\naction = "allow"\nport = "80-70"\n', 3, 1, "bad port"),
        ('[[rule]]\naction = "allow"\nport = 70000\n', 3, 1, "bad port"),
        ('[[rule]]\naction = "allow"\nproto = "sctp"\n', 3, 1, "unknown proto"),
        ('[[rule]]\naction = "allow"\nscope = "team:x"\n', 3, 1, "bad scope"),
        ('[[rule]]\naction = "allow"\nhost = "a..b"\n', 3, 1, "bad host"),
        ('[[rule]]\naction = "allow"\nlifetime = "once"\n', 3, 1, "not allowed"),
        ('[[rule]]\naction = "allow"\nlifetime = "soon"\n', 3, 1, "bad lifetime"),
        ('[[rule]]\naction = "allow"\nlifetime = "session"\n', 3, 1, "needs a session"),
        ('[[rule]]\naction = "allow"\nlifetime = "5m"\nexpires_at = 5\n', 3, 1, "not both"),
        ('[[rule]]\naction = "allow"\nproto = "dns"\nport = 53\n', 4, 1, "makes no sense"),
        ('[[rule]]\naction = "allow"\npriority = "high"\n', 3, 1, "integer"),
        ('[[rule]]\naction = "allow"\nenabled = "yes"\n', 3, 1, "true or false"),
        ('[[rule]]\naction = "allow"\npath = "v1"\n', 3, 1, "must start with /"),
        ('[[rule]]\naction = "allow"\ncreated = 2024-05-01\n', 3, 1, "date-time"),
        ('[[rule]]\n  host = "a.test"\n', 1, 1, "no action"),
        ('[[rule]]\naction = "allow"\n[[rule]]\nnote = """x\nhost = 1\n"""\naction = "deny"\n'
         'host = 1\n', 8, 1, "rule 2: host must be a string"),
        ('[rules]\naction = "allow"\n', 1, 1, "unknown key 'rules'"),
        ('blocklist = ["ok.test",\n  "no way"]\n', 2, 4, "bad blocklist entry"),
        ('blocklist = "x.test"\n', 1, 1, "list of strings"),
    ],
)  # fmt: skip
def test_errors_point_at_file_line_col(
    tmp_path: Path, text: str, line: int, col: int, what: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(PolicyError) as err:
        load_policy(path, now=NOW)
    msg = str(err.value)
    assert msg.startswith(f"{path}:{line}:{col}: "), msg
    assert what in msg
    assert (err.value.line, err.value.col) == (line, col)


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "p.toml"
    path.write_bytes(b'[[rule]]\naction = "\xff"\n')
    with pytest.raises(PolicyError, match=r"p\.toml:1:1: not UTF-8"):
        load_policy(path)


def test_an_exe_rule_round_trips_and_a_bad_exe_names_its_line() -> None:
    text = '[[rule]]\naction = "allow"\nhost = "api.example.test"\nexe = "/usr/bin/curl"\n'
    [rule] = loads_policy(text, now=NOW).rules
    assert rule.exe == "/usr/bin/curl"
    assert loads_policy(dump_policy([rule]), now=NOW).rules[0].exe == "/usr/bin/curl"
    with pytest.raises(PolicyError, match="absolute path or a glob"):
        loads_policy(text.replace("/usr/bin/curl", "curl"), now=NOW)
