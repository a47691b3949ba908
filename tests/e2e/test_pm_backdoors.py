"""Issue 16: a backdoored package installed through `coderun npm|pip|bundle` in enforce
mode. The registry fixture serves it (sandbox/registry.py); its phone-home (npm
postinstall, setup.py reading ~/.ssh, a gem extension's reverse shell) is denied and
logged, never reaches the demo internet, and the install itself succeeds."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from sandbox.internet import DemoInternet
from sandbox.registry import Registry
from tests.e2e.conftest import Result

PHONE_HOME = "evil.example.test"
CASES = {
    # tool: (project, args, a file the install leaves, the backdoor's download)
    "npm": ("npm-backdoor", ["ci"], "node_modules/colorful-logger/lib/setup.js",
            "GET registry.npmjs.test /colorful-logger/-/colorful-logger-1.0.0.tgz 200"),
    "pip": ("pip-backdoor", ["install", "-r", "requirements.txt"],
            ".venv/lib/python3.13/site-packages/fastjson_utils/__init__.py",
            "GET pypi.test /packages/fastjson-utils-1.0.0.tar.gz 200"),
    "bundle": ("ruby-backdoor", ["install"], "vendor/bundle/ruby",
               "GET rubygems.test /gems/rack-timing-1.0.0.gem 200"),
}  # fmt: skip


def phone_home_attempts(result: Result) -> list[str]:
    return [
        f"{e.kind} {e.qname or e.dst} {e.verdict}"
        for e in result.log
        if PHONE_HOME in (e.qname, *e.names)
    ]


@pytest.mark.parametrize("tool", sorted(CASES))
def test_backdoor_phone_home_is_denied_and_logged(
    tool: str,
    run_pm: Callable[..., Result],
    registry: Registry,
    internet: DemoInternet,
    tmp_path: Path,
) -> None:
    name, args, installed, download = CASES[tool]
    project = registry.project(name, tmp_path / name)
    reg_mark, net_mark = len(registry.logs()), len(internet.logs())
    result = run_pm(tool, project, *args)
    assert result.status == 0, result.stdout + result.stderr
    assert (project / installed).exists(), f"{installed} missing after the install"
    assert download in registry.logs(reg_mark)
    attempts = phone_home_attempts(result)
    assert attempts, f"no attempt to reach {PHONE_HOME} logged: {result.log}"
    assert all(a.endswith(" deny") for a in attempts), attempts
    assert PHONE_HOME not in internet.logs(net_mark)  # not even looked up


def test_in_audit_mode_the_same_phone_home_gets_through(
    run_pm: Callable[..., Result], registry: Registry, internet: DemoInternet, tmp_path: Path
) -> None:
    """The control: without the policy deciding, the npm postinstall does reach its
    author (so the enforce-mode test above can fail)."""
    project = registry.project("npm-backdoor", tmp_path / "npm-backdoor")
    mark = len(internet.logs())
    result = run_pm("npm", project, "ci", mode="audit")
    assert result.status == 0, result.stdout + result.stderr
    assert f"HTTP POST {PHONE_HOME} /npm" in internet.logs(mark)
