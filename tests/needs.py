"""What a test needs from the machine (root, Docker, a tool): skipped on a developer's
machine without it, a failure in CI (``CI=true``, or ``CODERUN_REQUIRE_DOCKER=1`` from
``scripts/test``), where nothing may be skipped."""

from __future__ import annotations

import os
import shutil

import pytest


def strict(switch: str = "CODERUN_REQUIRE_DOCKER") -> bool:
    """Whether a missing requirement fails the test instead of skipping it: in CI, or
    where ``switch`` is 1."""
    return os.environ.get("CI", "").lower() == "true" or os.environ.get(switch) == "1"


def need(ok: object, reason: str, switch: str = "CODERUN_REQUIRE_DOCKER") -> None:
    """Go on if ``ok``; else skip the test, or fail it where nothing may be skipped."""
    if ok:
        return
    if strict(switch):
        pytest.fail(f"{reason} (CI: a test that cannot run fails)", pytrace=False)
    pytest.skip(reason)


def need_root(why: str) -> None:
    need(os.geteuid() == 0, f"needs root: {why}")


def need_tool(name: str, why: str = "") -> None:
    need(shutil.which(name), f"{name} is not installed{': ' + why if why else ''} "
                            "(scripts/setup.sh installs it)")
