"""Durations for rule lifetimes: every unit's size, and the shortest form shown back."""

from __future__ import annotations

import pytest

from snitch.core.grammar import format_duration, parse_duration

UNITS = [("1s", 1), ("1m", 60), ("1h", 3600), ("1d", 86400), ("1w", 604800)]


@pytest.mark.parametrize(("text", "seconds"), UNITS)
def test_each_unit_has_its_size(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds
    assert parse_duration(text.upper()) == seconds
    assert format_duration(seconds) == text  # a whole unit is shown as that unit


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (59, "59s"),
        (61, "1m1s"),
        (3599, "59m59s"),
        (3601, "1h1s"),
        (90061, "1d1h1m1s"),
        (694861, "1w1d1h1m1s"),
        (1209600, "2w"),
        (59.9, "59s"),  # rounded down
        (-5, "0s"),
    ],
)
def test_format_is_the_shortest_chained_form_largest_unit_first(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text
    if seconds >= 1:
        assert parse_duration(text) == int(seconds)


def test_parse_chains_parts_in_any_order_and_fractions() -> None:
    assert parse_duration(" 1h30m ") == 5400
    assert parse_duration("30m1h") == 5400
    assert parse_duration("1.5h") == 5400
    assert parse_duration("0.5") == 0.5
    assert parse_duration("1") == 1


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty duration"),
        ("   ", "empty duration"),
        ("5x", "bad duration '5x' (use e.g. 30s, 5m, 1h, 2d)"),
        ("h", "bad duration 'h' (use e.g. 30s, 5m, 1h, 2d)"),
        ("1h 30m", "bad duration '1h 30m' (use e.g. 30s, 5m, 1h, 2d)"),
        ("x1h", "bad duration 'x1h' (use e.g. 30s, 5m, 1h, 2d)"),
        ("0", "duration '0' must be positive"),
        ("0s", "duration '0s' must be positive"),
    ],
)
def test_bad_durations_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(ValueError) as err:
        parse_duration(text)
    assert str(err.value) == message


def test_less_than_a_second_is_positive() -> None:
    assert parse_duration("0.5s") == 0.5
