"""A run removes what killed runs left (``coderun gc`` at its start, beside the
session's start since it never touches the run's own objects): by the time the run
exits, an orphan's container and network are gone and the run itself left nothing."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path

import docker
import docker.errors

from sandbox.labels import LABEL, OWNER_HOST, OWNER_PID, ROLE
from tests.e2e.conftest import Result, leftovers


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_a_run_removes_a_killed_runs_objects_before_it_exits(
    client: docker.DockerClient, tags: dict[str, str], home: Path,
    run_coderun: Callable[..., Result],
) -> None:  # fmt: skip
    orphan = f"orphan{uuid.uuid4().hex[:8]}"
    labels = {LABEL: orphan, OWNER_PID: str(_dead_pid()), OWNER_HOST: socket.gethostname(),
              ROLE: "holder"}  # fmt: skip
    network = client.networks.create(f"coderun-{orphan}-net", labels=labels)
    container = client.containers.create(tags["sandbox-bash"], ["true"], labels=labels,
                                         name=f"coderun-{orphan}-ns")  # fmt: skip
    try:
        result = run_coderun("--mode", "enforce", "--", "true")
        assert result.status == 0, result.stderr
        for gone in (lambda: client.containers.get(container.id),
                     lambda: client.networks.get(network.id)):  # fmt: skip
            try:
                gone()
            except docker.errors.NotFound:
                continue
            raise AssertionError("the killed run's leftovers are still there")
        assert leftovers(client) == []
    finally:
        for remove in (lambda: container.remove(force=True), network.remove):
            with contextlib.suppress(docker.errors.NotFound):
                remove()
