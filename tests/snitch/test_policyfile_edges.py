"""Policy files at their edges: each lifetime refusal word for word, counters, dates
without a zone, strings that need escaping, and where a key of a table is."""

from __future__ import annotations

import pytest

from snitch.core.model import Action, Rule
from snitch.core.policyfile import (
    Locator,
    PolicyError,
    dump_policy,
    dump_rule,
    loads_policy,
    toml_string,
)

NOW = 1_700_000_000.0
AT = "p.toml:4:1: rule 1: "


def refusal(body: str) -> str:
    with pytest.raises(PolicyError) as err:
        loads_policy('[[rule]]\naction = "allow"\nhost = "a.test"\n' + body, "p.toml", now=NOW)
    return str(err.value)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('lifetime = "once"\n',
         AT + "lifetime 'once' is not allowed in a policy file (one connection only)"),
        ('lifetime = "always"\nsession = "s1"\n',
         AT + "lifetime 'always' contradicts session/expires_at"),
        ('lifetime = "always"\nexpires_at = 2030-01-01T00:00:00Z\n',
         AT + "lifetime 'always' contradicts session/expires_at"),
        ('lifetime = "session"\n',
         AT + "lifetime 'session' needs a session key with the session id"),
        ('lifetime = "5m"\nexpires_at = 2030-01-01T00:00:00Z\n',
         AT + "give either a lifetime duration or expires_at, not both"),
        ('lifetime = "soon"\n',
         AT + "bad lifetime 'soon' (want always, session or a duration: 30s, 5m, 1h, 2d)"),
        ("lifetime = 5\n", AT + "lifetime must be a string, not int"),
        ("hits = -1\n", AT + "hits must be >= 0"),
    ],
)  # fmt: skip
def test_lifetime_and_counter_refusals(body: str, message: str) -> None:
    assert refusal(body) == message


def test_lifetimes_that_are_fine() -> None:
    head = '[[rule]]\naction = "allow"\nhost = "a.test"\n'
    (r,) = loads_policy(head + 'lifetime = " always "\n', now=NOW).rules
    assert r.expires_at is None and r.session is None
    (r,) = loads_policy(head + 'lifetime = "session"\nsession = "s1"\n', now=NOW).rules
    assert r.session == "s1"
    (r,) = loads_policy(head + 'lifetime = "1h30m"\n', now=NOW).rules
    assert r.expires_at == NOW + 5400
    (r,) = loads_policy(head + "hits = 0\n", now=NOW).rules
    assert r.hits == 0


def test_a_date_without_a_zone_is_utc_and_one_with_a_zone_is_kept() -> None:
    head = '[[rule]]\naction = "allow"\nhost = "a.test"\n'
    (naive,) = loads_policy(head + "created = 2023-11-14T22:13:20\n", now=NOW).rules
    (zoned,) = loads_policy(head + "created = 2023-11-15T00:13:20+02:00\n", now=NOW).rules
    assert naive.created == zoned.created == NOW


def test_strings_are_escaped_and_read_back() -> None:
    note = 'say "hi"\\ now\nnext\tcol \x01\x7f é'
    assert toml_string(note) == '"say \\"hi\\"\\\\ now\\nnext\\tcol \\u0001\\u007f é"'
    rule = Rule(Action.ALLOW, host="a.test", note=note, created=NOW)
    text = dump_rule(rule)
    assert f"note = {toml_string(note)}" in text.splitlines()
    (back,) = loads_policy(text, now=NOW).rules
    assert back.note == note


def test_once_rules_are_counted_and_the_rest_still_written() -> None:
    rules = [
        Rule(Action.ALLOW, host="once1.test", once_key="k1", created=NOW),
        Rule(Action.ALLOW, host="kept.test", created=NOW),
        Rule(Action.ALLOW, host="once2.test", once_key="k2", created=NOW),
    ]
    text = dump_policy(rules)
    assert 'host = "kept.test"' in text and "once1" not in text and "once2" not in text
    assert text.rstrip().endswith("# 2 once-rule(s) not exported")


def test_a_key_of_a_table_is_found_under_its_header() -> None:
    text = 'name = "x"\n\n[limits]\n# memory\n  memory = "1g"\ncpus = 2\n\n[other]\ncpus = 3\n'
    loc = Locator(text)
    assert loc.in_table("limits", "memory") == (5, 3)
    assert loc.in_table("limits", "cpus") == (6, 1)
    assert loc.in_table("limits", "pids") == (3, 1)  # absent: the header
    assert loc.in_table("limits") == (3, 1)
    assert loc.in_table("other", "cpus") == (9, 1)
    assert loc.in_table("name") == (1, 1)  # not a table: where the key is
    indented = Locator("x = 1\n  [limits]  # caps\ncpus = 2\n")
    assert indented.in_table("limits", "pids") == (2, 3)


KNOWN = (
    "action, host, cidr, port, proto, scope, priority, path, method, exe, lifetime, session, "
    "expires_at, enabled, source, note, created, hits, last_hit"
)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('host = "a.test"\n', "1:1: rule 1: rule has no action (allow or deny)"),
        ("action = 1\n", "2:1: rule 1: action must be a string, not int"),
        ('action = "allow"\nbogus = 1\n', f"3:1: rule 1: unknown key 'bogus' (known: {KNOWN})"),
        ('action = "allow"\nhost = 5\n', "3:1: rule 1: host must be a string, not int"),
        ('action = "allow"\ncidr = 1\n', "3:1: rule 1: cidr must be a string, not int"),
        ('action = "allow"\nproto = 5\n', "3:1: rule 1: proto must be a string, not int"),
        ('action = "allow"\nscope = 5\n', "3:1: rule 1: scope must be a string, not int"),
        ('action = "allow"\npath = 5\n', "3:1: rule 1: path must be a string, not int"),
        ('action = "allow"\nsession = 1\n', "3:1: rule 1: session must be a string, not int"),
        ('action = "allow"\nnote = 1\n', "3:1: rule 1: note must be a string, not int"),
        ('action = "allow"\nsource = 1\n', "3:1: rule 1: source must be a string, not int"),
        ('action = "allow"\ncreated = "x"\n',
         "3:1: rule 1: created must be a date-time (2024-05-01T12:00:00Z) or epoch seconds"),
        ('action = "allow"\nenabled = 1\n', "3:1: rule 1: enabled must be true or false"),
        ('action = "allow"\nhits = "1"\n', "3:1: rule 1: hits must be an integer"),
        ('action = "allow"\npriority = true\n', "3:1: rule 1: priority must be an integer"),
        ('action = "allow"\nproto = "dns"\nport = 443\n',
         "4:1: rule 1: a port makes no sense with proto dns"),
    ],
)  # fmt: skip
def test_each_field_refusal_names_the_field_and_its_line(body: str, message: str) -> None:
    with pytest.raises(PolicyError) as err:
        loads_policy("[[rule]]\n" + body, "p.toml", now=NOW)
    assert str(err.value) == "p.toml:" + message
