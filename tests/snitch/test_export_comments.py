"""Comments written into firewall rules carry names from the logs (hostile text): they are
quoted safely and cut to a bounded length."""

from __future__ import annotations

from snitch.review.export.common import clean_comment


def test_quotes_backslashes_and_control_characters_become_one_space_each() -> None:
    assert clean_comment('a"b\\c\nd\te\x1bf\x7fg') == "a b c d e f g"
    assert clean_comment("api.example.test, cdn.test") == "api.example.test, cdn.test"
    assert clean_comment("ünïcode ✓") == "ünïcode ✓"  # printable stays


def test_long_comments_are_cut_with_an_ellipsis() -> None:
    assert clean_comment("x" * 120) == "x" * 120
    assert clean_comment("x" * 121) == "x" * 117 + "..."
    assert clean_comment("y" * 300, 250) == "y" * 247 + "..."
    assert clean_comment("z" * 250, 250) == "z" * 250
