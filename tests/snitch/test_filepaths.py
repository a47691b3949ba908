"""shown_path: a host path as file rules see it (``~/...`` under the home folder)."""

from __future__ import annotations

import pytest

from snitch.core.filepaths import shown_path


@pytest.mark.parametrize(
    ("path", "home", "shown"),
    [
        ("/home/ann/.aws/credentials", "/home/ann", "~/.aws/credentials"),
        ("/home/ann/.aws/credentials", "/home/ann/", "~/.aws/credentials"),
        ("/home/ann", "/home/ann", "~"),
        ("/home/ann/", "/home/ann", "~"),
        ("/home/anna/x", "/home/ann", "/home/anna/x"),  # a sibling sharing a prefix
        ("/work/project/.env", "/home/ann", "/work/project/.env"),
        ("/home/ann/a/../b//c/./d", "/home/ann", "~/b/c/d"),
        ("/home/ann/../bob/x", "/home/ann", "/home/bob/x"),  # .. leaves home
        ("//home/ann/x", "/home/ann", "~/x"),
        ("/etc/passwd", "/", "/etc/passwd"),  # a home of / maps nothing
        ("/etc/passwd", "", "/etc/passwd"),
        ("/root/x", "relative", "/root/x"),
    ],
)
def test_shown_path(path: str, home: str, shown: str) -> None:
    assert shown_path(path, home) == shown


def test_a_relative_path_is_refused() -> None:
    with pytest.raises(ValueError, match="not an absolute path"):
        shown_path(".aws/credentials", "/home/ann")
