"""examples/github-actions.yml: valid YAML of the workflow's shape, and every coderun
command in it parses with the real command line (options, choices, arguments)."""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path
from typing import Any

import click
import pytest
import yaml

from sandbox.cli import main

WORKFLOW = Path(__file__).resolve().parents[2] / "examples" / "github-actions.yml"
FILES_ARGS = ("--policy", "--baseline")  # options whose file must exist to parse


def workflow() -> dict[Any, Any]:
    doc = yaml.safe_load(WORKFLOW.read_text())
    assert isinstance(doc, dict)
    return doc


def commands() -> list[list[str]]:
    """Every ``coderun ...`` line of every run step (continuations joined)."""
    found = []
    for job in workflow()["jobs"].values():
        for step in job["steps"]:
            script = step.get("run", "")
            for line in script.replace("\\\n", " ").splitlines():
                for part in re.split(r"&&|\|\||;", line):
                    words = shlex.split(part, comments=True)
                    if words[:1] == ["coderun"]:
                        found.append(words[1:])
    return found


def parse(args: list[str]) -> click.Command:
    """Parse ``coderun ARGS`` down to the command that would run; usage errors raise."""
    ctx = main.make_context("coderun", list(args))
    command: click.Command = main
    rest = ctx._protected_args + ctx.args
    while isinstance(command, click.Group) and rest:
        name, sub, rest = command.resolve_command(ctx, rest)
        assert sub is not None and name is not None
        ctx = sub.make_context(name, rest, parent=ctx)
        command, rest = sub, ctx._protected_args + ctx.args
    return command


def test_the_workflow_has_the_shape_actions_reads() -> None:
    doc = workflow()
    assert doc["name"] and doc["jobs"]["build"]["runs-on"]
    on = doc.get("on", doc.get(True))  # YAML 1.1 reads a bare `on` as true
    assert "push" in on and "pull_request" in on
    steps = doc["jobs"]["build"]["steps"]
    summary = [s for s in steps if "GITHUB_STEP_SUMMARY" in s.get("run", "")]
    assert summary and summary[0]["if"] == "always()"


def test_the_sarif_report_is_placed_at_the_policy_file() -> None:
    (sarif,) = [c for c in commands() if c[0] == "report" and "sarif" in c]
    (build,) = [c for c in commands() if c[0] == "run" and "enforce" in c]
    place = sarif[sarif.index("--sarif-location") + 1]
    assert place == build[build.index("--policy") + 1]


def test_the_build_runs_in_enforce_mode_with_a_policy_and_a_baseline() -> None:
    (build,) = [c for c in commands() if c[0] == "run" and "enforce" in c]
    assert "--policy" in build and "--fail-on-new" in build and "--baseline" in build
    assert any(a.endswith(".md") for a in build[build.index("--report") :][:2])


def test_every_coderun_command_parses(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    found = commands()
    assert {c[0] for c in found} >= {"run", "report", "baseline", "images", "doctor"}
    for args in found:
        for i, arg in enumerate(args[:-1]):
            if arg in FILES_ARGS:
                path = tmp_path / args[i + 1]
                path.parent.mkdir(parents=True, exist_ok=True)
                path.touch()
        try:
            parse(args)
        except click.UsageError as exc:
            raise AssertionError(f"coderun {' '.join(args)}: {exc.format_message()}") from exc
    assert os.getcwd() == str(tmp_path)


def test_a_wrong_command_would_be_caught() -> None:
    with pytest.raises(click.UsageError):
        parse(["run", "--report-format", "pdf", "--", "true"])
    with pytest.raises(click.UsageError):
        parse(["baseline", "save", "only-one-argument"])
