"""Issue 7: load. Many sessions at once, many held flows, many runs (some interrupted):
one ``test_load_*.py`` module per scenario; this module holds what they share.

Each scenario is a function that runs it at a given size and returns what it measured;
the tests run CI sizes and check the invariants, ``bench/bench_load.py`` runs the full
sizes and writes the numbers to docs/benchmarks.md. Invariants:

- every flow a session made is in its log exactly once, with the verdict it got, and
  that verdict was applied (allowed ones answered, denied ones did not);
- every held flow decided through the API got that decision, and is logged once;
- after runs killed in every way, ``coderun gc`` (or the next run) leaves nothing behind.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import docker

from sandbox.internet import DemoInternet
from tests.e2e.conftest import coderun_cmd
from tests.escape.helpers import objects_of


def session_dirs(home: Path) -> list[Path]:
    root = home / "sessions"
    return sorted(root.iterdir(), key=lambda p: p.stat().st_mtime) if root.exists() else []


def own_leftovers(client: docker.DockerClient, home: Path) -> list[str]:
    """What is left of this home's sessions (other runs may share the engine)."""
    return objects_of(client, [d.name for d in session_dirs(home)])


def run_cmd(internet: DemoInternet, *args: str) -> list[str]:
    return coderun_cmd(
        "run", "--egress-network", internet.network_name, "--dns-upstream", internet.ip, *args
    )


def results(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
