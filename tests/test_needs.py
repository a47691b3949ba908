"""A test that cannot run here is skipped on a developer's machine and fails in CI."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.needs import need, need_tool


def test_a_missing_requirement_skips_outside_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv("CODERUN_REQUIRE_DOCKER", raising=False)
    need(True, "present")  # nothing happens
    with pytest.raises(pytest.skip.Exception, match="no such thing"):
        need(False, "no such thing")


@pytest.mark.parametrize(("name", "value"), [("CI", "true"), ("CODERUN_REQUIRE_DOCKER", "1")])
def test_a_missing_requirement_fails_in_ci(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv("CODERUN_REQUIRE_DOCKER", raising=False)
    monkeypatch.setenv(name, value)
    with pytest.raises(pytest.fail.Exception, match="coderun-no-such-tool is not installed"):
        need_tool("coderun-no-such-tool")
    need_tool("sh")  # control: a tool that is there


def test_a_switch_of_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setenv("CODERUN_REQUIRE_DOCKER", "1")
    monkeypatch.delenv("CODERUN_REQUIRE_RUNSC", raising=False)
    with pytest.raises(pytest.skip.Exception):
        need(False, "gVisor", "CODERUN_REQUIRE_RUNSC")
    monkeypatch.setenv("CODERUN_REQUIRE_RUNSC", "1")
    with pytest.raises(pytest.fail.Exception):
        need(False, "gVisor", "CODERUN_REQUIRE_RUNSC")


def test_every_skip_goes_through_needs() -> None:
    """A test skips only through tests/needs.py, so that in CI it fails instead."""
    root = Path(__file__).parent
    allowed = {root / "needs.py", Path(__file__)}
    pattern = re.compile(r"pytest\.skip\(|pytest\.mark\.skip(if)?\b|pytest\.importorskip\(")
    found = [
        f"{path.relative_to(root.parent)}:{n}"
        for path in sorted(root.rglob("*.py"))
        if path not in allowed
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if pattern.search(line)
    ]
    assert found == [], found
