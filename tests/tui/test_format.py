"""The dashboard's batch patterns: what a suggested pattern covers, and what it never does."""

from __future__ import annotations

import pytest

from snitch.core.grammar import parent_pattern
from tests.fakes import pending
from tui.format import pattern_matches


@pytest.mark.parametrize(
    ("name", "pattern"),
    [
        ("api.example.test", "*.example.test"),
        ("a.b.example.test", "*.b.example.test"),
        ("example.test", "*.example.test"),  # never widened to the whole *.test
        ("Example.test.", "*.Example.test"),
    ],
)
def test_parent_pattern_drops_one_label_at_most(name: str, pattern: str) -> None:
    assert parent_pattern(name) == pattern


def test_a_pattern_matches_only_names_under_it() -> None:
    api = pending("p1", "api.example.test")
    other = pending("p2", "other.test", "192.0.2.9")
    apex = pending("p3", "example.test", "192.0.2.10")
    pattern = parent_pattern("example.test")
    assert pattern_matches(pattern, api) and not pattern_matches(pattern, apex)
    assert not pattern_matches(pattern, other)
    assert pattern_matches("*.EXAMPLE.test ", api)  # case and spaces do not matter
    assert not pattern_matches("", api) and not pattern_matches("  ", api)
    assert pattern_matches("192.0.2.*", other)  # an address is a name a pattern may match
