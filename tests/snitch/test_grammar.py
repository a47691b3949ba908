"""The one grammar (snitch/core/grammar.py): each parser, round trips, and the cases
where the CLI and the dashboard used to disagree."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from snitch.core.grammar import (
    GatewayState,
    Lifetime,
    Origin,
    Topic,
    Verdict,
    choices,
    format_duration,
    format_port,
    format_target,
    is_address,
    is_synthetic_address,
    is_synthetic_cidr,
    lifetime_text,
    lifetime_value,
    normalize_host,
    parse_duration,
    parse_endpoint,
    parse_lifetime,
    parse_port,
    parse_target,
)
from snitch.core.logentry import EntryKind

# -- durations ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30), ("5m", 300), ("1h", 3600), ("2d", 172800), ("1w", 604800),
        ("1h30m", 5400), ("30m1h", 5400), ("1.5h", 5400), ("0.5m", 30), ("90", 90),
        ("2.5", 2.5), (" 5M ", 300), ("1w1d1h1m1s", 694861),
    ],
)  # fmt: skip
def test_durations_parse(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    "bad", ["", "  ", "0", "0s", "0m0s", "-5m", "5x", "m5", "5 m", "1h 30m", "1h-", "h", "1.h",
            ".5h", "1e3", "5m!", "inf", "nan"],
)  # fmt: skip
def test_bad_durations_are_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(bad)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"), (-3, "0s"), (0.9, "0s"), (1, "1s"), (59, "59s"), (60, "1m"), (61, "1m1s"),
        (3600, "1h"), (3599, "59m59s"), (5400, "1h30m"), (86400, "1d"), (604800, "1w"),
        (604799, "6d23h59m59s"), (694861, "1w1d1h1m1s"), (90061.7, "1d1h1m1s"),
    ],
)  # fmt: skip
def test_durations_format_shortest(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


def test_a_duration_formats_to_its_largest_parts() -> None:
    assert format_duration(90061, parts=2) == "1d1h"
    assert format_duration(3600, parts=2) == "1h"
    assert format_duration(0, parts=2) == "0s"


@pytest.mark.parametrize("seconds", [1, 59, 60, 3600, 5400, 86399, 86400, 604800, 1234567])
def test_durations_round_trip(seconds: int) -> None:
    assert parse_duration(format_duration(seconds)) == seconds


# -- ports -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "span"),
    [
        ("443", (443, 443)), (443, (443, 443)), ("8000-8100", (8000, 8100)),
        ("1-65535", (1, 65535)),
        ("any", (0, 0)), ("ANY", (0, 0)), ("*", (0, 0)), ("", (0, 0)), ("0", (0, 0)), (0, (0, 0)),
        (" 22 ", (22, 22)), ("65535", (65535, 65535)),
    ],
)  # fmt: skip
def test_ports_parse(value: object, span: tuple[int, int]) -> None:
    assert parse_port(value) == span


@pytest.mark.parametrize(
    "bad", ["65536", "0-10", "100-99", "-1", "http", "1-2-3", "80-", "-80", "1.5", True, 70000,
            -1, None, 4.0, "**"],
)  # fmt: skip
def test_bad_ports_are_refused(bad: object) -> None:
    with pytest.raises(ValueError):
        parse_port(bad)


@pytest.mark.parametrize("span", [(0, 0), (1, 1), (443, 443), (8000, 8100), (1, 65535)])
def test_ports_round_trip(span: tuple[int, int]) -> None:
    assert parse_port(format_port(*span)) == span


def test_port_text() -> None:
    assert [format_port(0, 0), format_port(443, 443), format_port(80, 81)] == [
        "any",
        "443",
        "80-81",
    ]


# -- targets -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "target"),
    [
        ("api.example.test", ("api.example.test", None)),
        ("API.Example.TEST.", ("api.example.test", None)),
        ("*.example.test", ("*.example.test", None)),
        ("192.0.2.7", (None, "192.0.2.7")),
        ("192.0.2.7/32", (None, "192.0.2.7")),
        ("192.0.2.0/24", (None, "192.0.2.0/24")),
        ("2001:db8::1", (None, "2001:db8::1")),
        ("2001:db8::/32", (None, "2001:db8::/32")),
        ("*", (None, None)),
        ("any", (None, None)),
        ("ANY", (None, None)),
    ],
)
def test_targets_parse(text: str, target: tuple[str | None, str | None]) -> None:
    assert parse_target(text) == target
    assert parse_target(format_target(*target)) == target


@pytest.mark.parametrize(
    "bad",
    ["", "  ", "192.0.2.7/24", "192.0.2.0/33", "bad name", "a..b", "-a.test", "a-.test",
     "*.", "1.2.3", "198.18.0.5", "198.18.0.0/16", "x/24", "a.test:443", "a" * 254],
)  # fmt: skip
def test_bad_targets_are_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_target(bad)


def test_a_wildcard_needs_a_domain() -> None:
    with pytest.raises(ValueError):
        normalize_host("*.")


def test_synthetic_addresses() -> None:
    assert is_synthetic_address("198.18.0.1") and is_synthetic_address("198.19.255.254")
    assert not is_synthetic_address("198.20.0.1")
    assert is_synthetic_cidr("198.18.4.0/24") and not is_synthetic_cidr("198.16.0.0/12")
    assert not is_synthetic_cidr(None) and not is_synthetic_cidr("nonsense")


def test_addresses() -> None:
    assert is_address("192.0.2.1") and is_address("::1")
    assert not is_address("192.0.2.0/24") and not is_address("123.456") and not is_address("a.test")


# -- endpoints ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "endpoint"),
    [
        ("api.example.test", ("api.example.test", 0)),
        ("api.example.test:443", ("api.example.test", 443)),
        ("192.0.2.1:80", ("192.0.2.1", 80)),
        ("[2001:db8::1]:443", ("2001:db8::1", 443)),
        ("[2001:db8::1]", ("2001:db8::1", 0)),
        ("2001:db8::1", ("2001:db8::1", 0)),
        (" a.test:1 ", ("a.test", 1)),
        ("a.test:65535", ("a.test", 65535)),
    ],
)
def test_endpoints_parse(text: str, endpoint: tuple[str, int]) -> None:
    assert parse_endpoint(text) == endpoint


@pytest.mark.parametrize(
    "bad", ["", ":443", "[]:443", "a.test:http", "a.test:0", "a.test:65536", "a.test:-1",
            "[2001:db8::1]:x", "a.test:4 43"],
)  # fmt: skip
def test_bad_endpoints_are_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_endpoint(bad)


# -- lifetimes ---------------------------------------------------------------------------


def test_lifetimes_parse() -> None:
    assert parse_lifetime("once") is Lifetime.ONCE
    assert parse_lifetime(" Session ") is Lifetime.SESSION
    assert parse_lifetime("always") is Lifetime.ALWAYS
    assert parse_lifetime("1.5h") == 5400
    assert parse_lifetime("90") == 90
    for bad in ("", "forever", "0s", "-1m", "once more"):
        with pytest.raises(ValueError, match="bad lifetime"):
            parse_lifetime(bad)


@dataclass
class Lasts:
    once_key: str | None = None
    session: str | None = None
    expires_at: float | None = None


def test_lifetime_of_a_rule() -> None:
    now = 1000.0
    assert lifetime_text(Lasts(once_key="k"), now) == "once"
    assert lifetime_text(Lasts(session="s1"), now) == "session"
    assert lifetime_text(Lasts(), now) == "always"
    assert lifetime_text(Lasts(expires_at=now + 3600), now) == "1h left"
    assert lifetime_text(Lasts(expires_at=now + 90061), now) == "1d1h1m1s left"
    assert lifetime_text(Lasts(expires_at=now + 90061), now, parts=2) == "1d1h left"
    assert lifetime_text(Lasts(expires_at=now), now) == "expired"
    assert lifetime_text(Lasts(expires_at=now - 5), now) == "expired"
    # lifetime_value is what a form shows for editing: parse_lifetime reads it back
    for rule in (Lasts(once_key="k"), Lasts(session="s"), Lasts(), Lasts(expires_at=now + 5400)):
        value = lifetime_value(rule, now)
        parsed = parse_lifetime(value)
        assert parsed == (5400 if rule.expires_at else value)
    assert lifetime_value(Lasts(expires_at=now - 1), now) == "1s"


# -- the drift the issue found between the CLI and the dashboard ----------------------------


def test_one_answer_for_what_the_cli_and_the_dashboard_used_to_disagree_on() -> None:
    from sandbox.cli import rules as cli_rules
    from tui.screens import rules as tui_rules

    assert parse_duration("1.5h") == 5400  # the dashboard refused it
    assert parse_port("*") == (0, 0)  # the CLI refused it
    assert format_duration(3600) == "1h"  # never "60m"
    assert format_duration(604800) == "1w"
    # neither keeps a parser of its own
    for module in (cli_rules, tui_rules):
        own = {n for n in vars(module) if n.startswith(("parse_", "split_"))}
        assert all(getattr(module, n).__module__ == "snitch.core.grammar" for n in own), own


# -- enums -------------------------------------------------------------------------------


def test_enums_are_their_strings() -> None:
    assert Verdict.REBIND == "rebind" and Topic.PROMPTS == "prompts"
    assert GatewayState.READY == "ready" and Origin.DEADLINE == "deadline"
    assert choices(Lifetime) == ["once", "session", "always"]
    assert choices(Origin) == ["rule", "default", "person", "deadline", "audit", "limit"]


def test_log_filters_take_every_kind_and_verdict(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``coderun log --kind tls`` once failed: a copied list forgot it."""
    monkeypatch.setenv("CODERUN_HOME", str(tmp_path))
    from sandbox.cli.review import log

    show = log.commands["show"]
    params = {p.name: p for p in show.params}
    kind, verdict = params["kinds"].type, params["verdict"].type
    assert isinstance(kind, click.Choice) and isinstance(verdict, click.Choice)
    assert list(kind.choices) == choices(EntryKind) and "tls" in kind.choices
    assert list(verdict.choices) == choices(Verdict)
    result = CliRunner().invoke(show, ["--kind", "tls", "no-such-session"])
    assert "no-such-session" in result.output and "Invalid value" not in result.output
    result = CliRunner().invoke(show, ["--kind", "nonsense", "no-such-session"])
    assert "Invalid value for '--kind'" in result.output  # the check itself can fail
