"""`coderun npm|pip|bundle|go`: what a run is given (no Docker needed: the run command
is replaced by one that records its arguments)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

from sandbox import pm
from sandbox.cli import main
from snitch.core.policyfile import load_policy


@pytest.fixture()
def home(home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CODERUN_CACHE", str(tmp_path / "cache"))
    return home


@pytest.fixture()
def recorded(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    calls: list[dict[str, Any]] = []

    @click.command()
    @click.option("--mode")
    @click.option("--prompt")
    @click.option("--profile")
    @click.option("--egress-network")
    @click.option("--dns-upstream")
    @click.option("--intercept-tls", is_flag=True)
    def fake_run(**kwargs: Any) -> None:
        calls.append(kwargs)

    import sandbox.cli.run

    monkeypatch.setattr(sandbox.cli.run, "run", fake_run)
    return calls


@pytest.mark.parametrize("tool", sorted(pm.TOOLS))
def test_shipped_policies_load_and_only_allow(tool: str) -> None:
    rules = load_policy(pm.shipped_policy(tool))
    assert rules
    assert all(r.action.value == "allow" and (r.port_lo, r.port_hi) == (443, 443) for r in rules)


def test_npm_runs_in_the_project_with_its_cache_and_policy(
    home: Path, tmp_path: Path, recorded: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    project = tmp_path / "app"
    project.mkdir()
    monkeypatch.chdir(project)
    result = CliRunner().invoke(
        main, ["npm", "--mode", "enforce", "-e", "npm_config_fund=true", "ci", "--ignore-scripts"]
    )
    assert result.exit_code == 0, result.output
    (call,) = recorded
    assert call["command"] == ("npm", "ci", "--ignore-scripts")
    assert call["image"] == "node" and call["mode"] == "enforce"
    assert call["workdir"] == str(project)
    cache = home.parent / "cache" / "pm" / "npm"
    assert call["volumes"] == (f"{project}:{project}", f"{cache}:{pm.CACHE_MOUNT}")
    assert cache.is_dir() and (cache.stat().st_mode & 0o077) == 0
    assert call["policy_file"] == pm.shipped_policy("npm")
    assert f"npm_config_cache={pm.CACHE_MOUNT}" in call["env"]
    assert call["env"][-1] == "npm_config_fund=true"  # the person's -e come last: they win
    assert call["user"] == ("root" if os.getuid() == 0 else f"{os.getuid()}:{os.getgid()}")


def test_pip_uses_the_project_venv(
    home: Path, tmp_path: Path, recorded: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["pip", "install", "-r", "requirements.txt"])
    assert result.exit_code == 0, result.output
    command = recorded[0]["command"]
    assert command[:2] == ("sh", "-c") and ".venv/bin/pip" in command[2]
    assert command[3:] == ("pip", "install", "-r", "requirements.txt")
    assert recorded[0]["image"] == "python"


def test_a_users_policy_replaces_the_shipped_one_and_policy_replaces_both(
    home: Path, tmp_path: Path, recorded: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    mine = pm.user_policy("bundle")
    mine.parent.mkdir(parents=True)
    mine.write_text('[[rule]]\naction = "allow"\nhost = "gems.example.test"\n')
    once = tmp_path / "once.toml"
    once.write_text('[[rule]]\naction = "allow"\nhost = "other.example.test"\n')
    runner = CliRunner()
    assert runner.invoke(main, ["bundle", "install"]).exit_code == 0
    assert runner.invoke(main, ["bundle", "--policy", str(once), "install"]).exit_code == 0
    assert [c["policy_file"] for c in recorded] == [mine, once]
    out = runner.invoke(main, ["pm", "policy", "bundle"]).output
    assert "gems.example.test" in out and str(mine) in out


def test_home_and_root_are_refused(
    home: Path, recorded: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    for where in (Path.home(), Path("/")):
        monkeypatch.chdir(where)
        result = CliRunner().invoke(main, ["go", "mod", "download"])
        assert result.exit_code == 1 and "refusing to mount" in result.output
    assert recorded == []


def test_cache_is_listed_and_cleaned(home: Path) -> None:
    (pm.cache_dir("go") / "mod").mkdir()
    (pm.cache_dir("go") / "mod" / "x").write_bytes(b"x" * 2000)
    runner = CliRunner()
    listing = runner.invoke(main, ["pm", "cache"]).output
    assert "2 kB" in listing
    assert "removed" in runner.invoke(main, ["pm", "cache", "--clean", "go"]).output
    assert not (home.parent / "cache" / "pm" / "go" / "mod").exists()


def test_git_of_the_project_is_read_only(
    home: Path, tmp_path: Path, recorded: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / ".git").mkdir()
    monkeypatch.chdir(tmp_path)
    assert CliRunner().invoke(main, ["npm", "ci"]).exit_code == 0
    here = tmp_path.resolve()
    assert recorded[0]["volumes"][:2] == (f"{here}:{here}", f"{here}/.git:{here}/.git:ro")
