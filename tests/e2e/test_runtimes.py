"""Issue 16: every runtime image runs its language's hello-world, and installs a package
from the local registry fixture through `coderun npm|pip|bundle|go`, which the
project then uses."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from sandbox.registry import Registry
from tests.e2e.conftest import Result

HELLO = {
    "bash": ["bash", "-c", "echo hello from bash"],
    "python": ["python3", "-c", "print('hello from python')"],
    "node": ["node", "-e", "console.log('hello from node')"],
    "go": ["sh", "-c", "cd /tmp && printf 'package main\\nimport \"fmt\"\\nfunc main() "
           "{ fmt.Println(\"hello from go\") }\\n' > hello.go && go run hello.go"],
    "ruby": ["ruby", "-e", "puts 'hello from ruby'"],
    "rails": ["ruby", "-e", "require 'rails'; puts \"hello from rails #{Rails.version}\""],
}  # fmt: skip


@pytest.mark.parametrize("runtime", sorted(HELLO))
def test_hello_world(runtime: str, run_coderun: Callable[..., Result]) -> None:
    result = run_coderun("--mode", "enforce", "--image", runtime, "--", *HELLO[runtime],
                         timeout=600)  # fmt: skip
    assert result.status == 0, result.stdout + result.stderr
    assert f"hello from {runtime}" in result.stdout
    assert not result.flows()  # hello-world makes no connection


def test_node_installs_and_uses_a_package(
    run_pm: Callable[..., Result], registry: Registry, tmp_path: Path
) -> None:
    project = registry.project("npm", tmp_path / "npm")
    installed = run_pm("npm", project, "install")
    assert installed.status == 0, installed.stdout + installed.stderr
    assert (project / "node_modules/hello-fixture/index.js").is_file()
    used = run_pm("npm", project, "exec", "--call", "node index.js")
    assert "hello, npm, from hello-fixture" in used.stdout, used.stdout + used.stderr


def test_python_installs_and_uses_a_package(
    run_pm: Callable[..., Result],
    run_coderun: Callable[..., Result],
    registry: Registry,
    tmp_path: Path,
) -> None:
    project = registry.project("pip", tmp_path / "pip")
    installed = run_pm("pip", project, "install", "-r", "requirements.txt")
    assert installed.status == 0, installed.stdout + installed.stderr
    used = run_coderun("--mode", "enforce", "--image", "python", "--user", "root",
                       "-v", f"{project}:{project}", "-w", str(project), "--",
                       ".venv/bin/python", "-c",
                       "import hello_fixture; print(hello_fixture.hello('pip'))")  # fmt: skip
    assert "hello, pip, from hello_fixture" in used.stdout, used.stdout + used.stderr


def test_go_downloads_and_uses_a_module(
    run_pm: Callable[..., Result], registry: Registry, tmp_path: Path
) -> None:
    project = registry.project("go", tmp_path / "go")
    downloaded = run_pm("go", project, "mod", "download", "-x")
    assert downloaded.status == 0, downloaded.stdout + downloaded.stderr
    used = run_pm("go", project, "run", ".")  # checks go.sum against the download
    assert "hello, go, from fixtures.test/greet" in used.stdout, used.stdout + used.stderr


@pytest.mark.parametrize("runtime", ["ruby", "rails"])
def test_ruby_installs_and_uses_a_gem(
    runtime: str, run_pm: Callable[..., Result], registry: Registry, tmp_path: Path
) -> None:
    project = registry.project("ruby", tmp_path / "ruby")
    installed = run_pm("bundle", project, "install", image=runtime)
    assert installed.status == 0, installed.stdout + installed.stderr
    script = "require 'hello_fixture'; puts HelloFixture.hello('ruby')"
    used = run_pm("bundle", project, "exec", "ruby", "-e", script, image=runtime)
    assert "hello, ruby, from hello_fixture" in used.stdout, used.stdout + used.stderr
