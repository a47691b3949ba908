"""Issue 16: a backdoored package installed through `coderun npm|pip|bundle` in enforce
mode. The registry fixture serves it (sandbox/registry.py); its phone-home (npm
postinstall, setup.py reading ~/.ssh, a gem extension's reverse shell) is denied and
logged, never reaches the demo internet, and the install itself succeeds."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from sandbox.internet import DemoInternet
from sandbox.registry import Registry
from tests.e2e.conftest import Result, leftovers

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
    assert leftovers(registry.container.client) == []


@pytest.mark.parametrize("tool", sorted(CASES))
def test_in_audit_mode_the_same_phone_home_gets_through(
    tool: str,
    run_pm: Callable[..., Result],
    registry: Registry,
    internet: DemoInternet,
    tmp_path: Path,
) -> None:
    """The control: with nothing denied, each backdoor does reach its author (so the
    enforce-mode test above can fail). pip's setup.py is given a fake ~/.ssh and sends
    it; the gem's reverse shell connects to port 4444 (the demo internet refuses it)."""
    name, args, _, _ = CASES[tool]
    project = registry.project(name, tmp_path / name)
    fake_home = project / "home"
    (fake_home / ".ssh").mkdir(parents=True)
    key = "-----BEGIN FAKE KEY-----\n" + "k" * 300 + "\n-----END FAKE KEY-----\n"
    (fake_home / ".ssh" / "id_ed25519").write_text(key)
    mark = len(internet.logs())
    result = run_pm(tool, project, *args, mode="audit", env={"HOME": str(fake_home)})
    assert result.status == 0, result.stdout + result.stderr
    sent = internet.logs(mark)
    if tool == "npm":
        assert f"HTTP POST {PHONE_HOME} /npm" in sent
    elif tool == "pip":
        lines = [line for line in sent.splitlines() if f"HTTP POST {PHONE_HOME} /pip" in line]
        assert lines and int(lines[0].split()[-1]) > len(key), sent  # the key went too
    else:
        shell = [e for e in result.flows(dport=4444) if PHONE_HOME in e.names]
        assert shell, result.log


def test_in_ask_mode_the_phone_home_waits_for_the_person(
    home: Path, internet: DemoInternet, registry: Registry, tmp_path: Path
) -> None:
    """The demo: `coderun npm ci` in ask mode on a terminal; the registry is allowed by
    the policy, the postinstall's connection to its author is held and asked about on
    the line prompt; denied, the install still completes."""
    from sandbox.line_prompt import SETTLE_SECONDS
    from sandbox.registry import TOOL_ENV
    from tests.approver.terminal import Terminal, cli_env
    from tests.e2e.conftest import PM_POLICY, coderun_cmd, latest_log

    project = registry.project("npm-backdoor", tmp_path / "npm-backdoor")
    command = coderun_cmd(
        "npm", "--mode", "ask", "--prompt", "line", "--egress-network", internet.network_name,
        "--dns-upstream", internet.ip, "--policy", str(PM_POLICY),
        *(f"-e{k}={v}" for k, v in TOOL_ENV["npm"].items()), "ci",
    )  # fmt: skip
    in_project = ["sh", "-c", 'cd "$1" && shift && exec "$@"', "sh", str(project), *command]
    term = Terminal(in_project, cli_env(home, CODERUN_CACHE=str(tmp_path / "cache")))
    try:
        term.wait_for(f"Allow connection to {PHONE_HOME}".encode(), timeout=240)
        time.sleep(SETTLE_SECONDS + 0.15)  # a person reads the question first
        term.type("d\n")
        term.wait_for(f"denied once: {PHONE_HOME} 80/tcp".encode())
        assert term.wait(120) == 0, term.shown().decode(errors="replace")
    finally:
        term.close()
    assert (project / "node_modules/colorful-logger/lib/setup.js").exists()
    verdicts = {e.names[0]: e.verdict for e in latest_log(home) if e.kind == "flow" and e.names}
    assert verdicts == {"registry.npmjs.test": "allow", PHONE_HOME: "deny"}, verdicts


def test_an_install_cannot_plant_a_git_hook(
    run_pm: Callable[..., Result], registry: Registry, tmp_path: Path
) -> None:
    """The project is writable, its .git is not: a hook planted there would run on the host."""
    project = registry.project("npm", tmp_path / "npm")
    (project / ".git" / "hooks").mkdir(parents=True)
    plant = "echo owned > .git/hooks/post-checkout; echo ok > planted-beside"
    result = run_pm("npm", project, "exec", "--call", plant)
    assert (project / "planted-beside").read_text() == "ok\n"  # the project itself: writable
    assert not (project / ".git/hooks/post-checkout").exists()
    assert "Read-only file system" in result.stderr, result.stderr
