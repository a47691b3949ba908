"""Policy files with ``[[file]]`` tables: both spellings, the identity round trip, and
FILE:LINE:COL errors naming the table and key."""

from __future__ import annotations

import pytest

from snitch.core.model import Action, Proto, Rule
from snitch.core.policyfile import PolicyError, dump_policy, loads_policy

NOW = 1_700_000_000.0

CANONICAL = """\
# coderun policy file: load with `coderun rules import FILE`

[[rule]]
action = "allow"
host = "api.example.test"
port = 443
proto = "tcp"
source = "policy"
created = 2023-11-14T22:13:20Z

[[file]]
allow = "~/.aws/*"
access = "read"
source = "policy"
note = "the CLI reads its config"
created = 2023-11-14T22:13:20Z

[[file]]
deny = "**/.env"
exe = "/usr/bin/*"
scope = "profile:web"
priority = 3
expires_at = 2023-11-14T23:13:20Z
enabled = false
source = "policy"
created = 2023-11-14T22:13:20Z
hits = 4
last_hit = 2023-11-14T22:13:21Z
"""


def test_file_tables_load_and_dump_back_identically() -> None:
    rules = loads_policy(CANONICAL, now=NOW).rules
    assert [r.describe() for r in rules] == [
        "allow api.example.test:443/tcp",
        "allow-file ~/.aws/* (read)",
        "deny-file **/.env exe=/usr/bin/*",
    ]
    deny = rules[2]
    assert (deny.proto, deny.scope, deny.priority, deny.enabled, deny.hits) == (
        Proto.FILE, "profile:web", 3, False, 4)  # fmt: skip
    assert deny.expires_at == NOW + 3600
    assert dump_policy(rules) == CANONICAL


def test_action_and_path_is_the_same_rule() -> None:
    text = '[[file]]\naction = "deny"\npath = "~/.ssh/*"\naccess = "write"\nlifetime = "5m"\n'
    (rule,) = loads_policy(text, now=NOW).rules
    assert (rule.action, rule.file, rule.access) == (Action.DENY, "~/.ssh/*", "write")
    assert rule.expires_at == NOW + 300 and rule.source == "policy"


def test_file_rules_are_written_after_network_rules() -> None:
    rules = [
        Rule(Action.ALLOW, proto=Proto.FILE, file="~/a", created=NOW),
        Rule(Action.DENY, host="b.example.test", created=NOW),
    ]
    text = dump_policy(rules)
    assert text.index("[[rule]]") < text.index("[[file]]")
    assert [r.describe() for r in loads_policy(text, now=NOW).rules] == [
        "deny b.example.test/any", "allow-file ~/a"]  # fmt: skip


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ('[[file]]\nallow = "x"\n', "p.toml:2:1: file 1: bad path glob 'x'"),
        ('[[file]]\nallow = "~/a"\ndeny = "~/b"\n', "p.toml:3:1: file 1: give one of"),
        ("[[file]]\nnote = 'n'\n", "p.toml:1:1: file 1: give one of allow = GLOB"),
        ('[[file]]\naction = "allow"\n', "p.toml:2:1: file 1: a [[file]] with an action needs"),
        ('[[file]]\naction = "permit"\npath = "~/a"\n', "p.toml:2:1: file 1: unknown action"),
        ('[[file]]\nallow = "~/a"\npath = "~/b"\n', "p.toml:3:1: file 1: path and allow both"),
        ('[[file]]\nallow = "~/a"\naccess = "exec"\n', "p.toml:3:1: file 1: bad access 'exec'"),
        ('[[file]]\nallow = "~/a"\nport = 443\n', "p.toml:3:1: file 1: unknown key 'port'"),
        ('[[file]]\nallow = "~/a"\nexe = "curl"\n', "p.toml:3:1: file 1: bad exe 'curl'"),
        ("[[file]]\nallow = 3\n", "p.toml:2:1: file 1: allow must be a string, not int"),
        ('[[file]]\nallow = "~/a"\nlifetime = "once"\n', "p.toml:3:1: file 1: lifetime 'once'"),
        ('[[rule]]\naction = "allow"\nproto = "file"\n', "p.toml:3:1: rule 1: a file rule is a"),
        ("file = 3\n", "p.toml:1:1: file must be an array of tables: [[file]]"),
        (
            "[[rule]]\naction = 'allow'\n\n[[file]]\nallow = '~/a'\n[[file]]\ndeny = '~'\n"
            "scope = 'team:x'\n",
            "p.toml:8:1: file 2: ",
        ),
    ],
)
def test_bad_file_tables_name_the_spot(text: str, error: str) -> None:
    with pytest.raises(PolicyError) as e:
        loads_policy(text, "p.toml", now=NOW)
    assert str(e.value).startswith(error)
