"""Issue 15's demo step: ``coderun demo`` (no terminal: enforce mode) tries to read a
fake ~/.aws/credentials through a --share (no file rule allows it: refused, a ``file``
line) and sends its token to a host it is not bound to (refused: a ``leak`` line); the
token's value reaches no log."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.e2e.conftest import coderun_cmd

pytestmark = pytest.mark.docker


def test_the_demo_shows_a_file_read_and_a_refused_token(home: Path, tags: dict[str, str]) -> None:
    proc = subprocess.run(coderun_cmd("demo"), capture_output=True, text=True, timeout=300,
                          stdin=subprocess.DEVNULL)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    # No file rule allows it (enforce mode): the open is refused, a decision in the log.
    assert "(could not read ~/.aws/credentials)" in out and "aws_secret" not in out
    assert "deny   file read /home/coderun/.aws/credentials = " in out
    assert "demo-aws-credentials" in out and "(no rule matched)" in out
    assert "leak GET to cdn.example.test" in out and "FANCY_TOKEN" in out
    assert "hello from api.example.test /v1/me" in out  # the bound host got it
    for path in (home / "demo" / "sessions").rglob("*"):
        if path.is_file():
            assert b"demo-token-not-real" not in path.read_bytes(), path
