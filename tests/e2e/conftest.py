"""Fixtures for end-to-end tests on a real Docker engine, real NFQUEUE, real images.

Every test here runs ``coderun`` for real against the demo internet, a container the
test session starts on a network of its own (the gateway's egress network): no packet
goes anywhere else. Without a Docker engine these tests are skipped, unless
``CODERUN_REQUIRE_DOCKER=1`` (scripts/test) or ``CI=true``, where they fail.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import docker
import docker.errors
import pytest
from docker.models.containers import Container

from sandbox import images
from sandbox.internet import DemoInternet, start_internet
from sandbox.registry import Registry
from snitch.core.logentry import EntryKind, LogEntry
from snitch.core.logfile import read_log
from snitch.core.settings import Topology
from tests.needs import need

pytestmark = pytest.mark.docker


@pytest.fixture(scope="session")
def client() -> docker.DockerClient:
    try:
        c = docker.from_env(timeout=120)
        c.ping()
        return c
    except docker.errors.DockerException as exc:
        need(False, f"no Docker engine: {exc}")
        raise


@pytest.fixture(scope="session")
def tags(client: docker.DockerClient) -> dict[str, str]:
    return images.build(client)


@pytest.fixture(scope="session")
def internet(client: docker.DockerClient, tags: dict[str, str]) -> Iterator[DemoInternet]:
    net = start_internet(client, tags["internet"])
    yield net
    net.stop()


@dataclass
class Result:
    status: int
    stdout: str
    stderr: str
    seconds: float
    log: list[LogEntry]

    def flows(self, **match: object) -> list[LogEntry]:
        return [
            e
            for e in self.log
            if e.kind is EntryKind.FLOW and all(getattr(e, k) == v for k, v in match.items())
        ]

    def dns(self, **match: object) -> list[LogEntry]:
        return [
            e
            for e in self.log
            if e.kind is EntryKind.DNS and all(getattr(e, k) == v for k, v in match.items())
        ]


def coderun_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "sandbox.cli", *args]


def latest_log(home: Path) -> list[LogEntry]:
    sessions = sorted((home / "sessions").iterdir(), key=lambda p: p.stat().st_mtime)
    return list(read_log(sessions[-1] / "flows.jsonl")) if sessions else []


@pytest.fixture()
def topology() -> Topology:
    """The topology of this test's runs (a module that runs its tests in every topology
    overrides it with ``params=list(Topology)``)."""
    return Topology.ROUTED


@pytest.fixture()
def run_coderun(
    home: Path, internet: DemoInternet, tags: dict[str, str], topology: Topology
) -> Callable[..., Result]:
    """Run ``coderun run`` as a subprocess against the demo internet (``--topology``
    from the ``topology`` fixture)."""

    def run(*args: str, timeout: float = 120, **kw: object) -> Result:
        cmd = coderun_cmd(
            "run", "--egress-network", internet.network_name, "--dns-upstream", internet.ip,
            "--topology", str(topology), *args,
        )  # fmt: skip
        start = time.monotonic()
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)  # type: ignore[call-overload]
        seconds = time.monotonic() - start
        return Result(proc.returncode, proc.stdout, proc.stderr, seconds, latest_log(home))

    return run


def leftovers(client: docker.DockerClient) -> list[str]:
    """coderun containers, networks and volumes that exist now, except the demo internet's.

    With CODERUN_HOME set (the ``home`` fixture), only this test's sessions count, so
    runs of other test processes on the same engine do not show up here.
    """
    home = os.environ.get("CODERUN_HOME")
    ours: set[str] | None = None
    if home and (Path(home) / "sessions").exists():
        ours = {p.name for p in (Path(home) / "sessions").iterdir()}

    def counts(session: str) -> bool:
        return not session.startswith("internet-") and (ours is None or session in ours)

    found = []
    for c in client.containers.list(
        all=True, filters={"label": "coderun.session"}, ignore_removed=True
    ):
        if counts(c.labels["coderun.session"]):
            found.append(f"container {c.name}")
    for n in client.networks.list(filters={"label": "coderun.session"}):
        if counts((n.attrs.get("Labels") or {})["coderun.session"]):
            found.append(f"network {n.name}")
    for v in client.volumes.list(filters={"label": "coderun.session"}):
        if counts((v.attrs.get("Labels") or {})["coderun.session"]):
            found.append(f"volume {v.name}")
    return found


def wait_for(cond: Callable[[], object], what: str, timeout: float = 30.0,
             seen: Callable[[], str] | None = None) -> object:  # fmt: skip
    """``cond()`` once it is true; at the deadline an error naming ``what`` and, with
    ``seen``, what there was instead (a screen, a log)."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            there = f"; there was:\n{seen()}" if seen is not None else ""
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}{there}")
        time.sleep(0.05)


# --- the package registry fixture (issue 16): coderun npm/pip/bundle/go -------------

PM_POLICY = Path(__file__).resolve().parents[2] / "examples" / "pm-fixture-policy.toml"


@pytest.fixture(scope="session")
def registry(client: docker.DockerClient, internet: DemoInternet) -> Iterator[Registry]:
    """registry.npmjs.test, pypi.test, rubygems.test, proxy.golang.test (sandbox/registry.py)."""
    from sandbox.registry import start_registry

    tag = images.build(client, ("registry",))["registry"]
    reg = start_registry(client, tag, internet)
    yield reg
    reg.stop()


@pytest.fixture()
def run_pm(
    home: Path, internet: DemoInternet, registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> Callable[..., Result]:
    """Run ``coderun TOOL [--image I] ARGS`` in folder ``project`` against the registry
    fixture, in enforce mode with examples/pm-fixture-policy.toml; each test has its
    own package caches (CODERUN_CACHE), so every test downloads what it installs."""
    monkeypatch.setenv("CODERUN_CACHE", str(home.parent / "cache"))
    from sandbox.registry import TOOL_ENV

    def run(
        tool: str, project: Path, *args: str, image: str | None = None, mode: str = "enforce",
        timeout: float = 300, env: dict[str, str] | None = None,
    ) -> Result:  # fmt: skip
        opts = ["--egress-network", internet.network_name, "--dns-upstream", internet.ip,
                "--mode", mode, "--policy", str(PM_POLICY)]  # fmt: skip
        if image:
            opts += ["--image", image]
        for key, value in {**TOOL_ENV[tool], **(env or {})}.items():
            opts += ["-e", f"{key}={value}"]
        start = time.monotonic()
        proc = subprocess.run(coderun_cmd(tool, *opts, *args), cwd=project, capture_output=True,
                              text=True, timeout=timeout)  # fmt: skip
        seconds = time.monotonic() - start
        return Result(proc.returncode, proc.stdout, proc.stderr, seconds, latest_log(home))

    return run


def pause(container: Container, deadline: float = 10.0) -> None:
    """``docker pause``, retried while the engine's cgroup freezer reports a transient
    "unable to freeze" (seen on a machine loaded far past its cores); any other error, or
    still failing at the deadline, is raised."""
    end = time.monotonic() + deadline
    while True:
        try:
            container.pause()
            return
        except docker.errors.APIError as exc:
            if "unable to freeze" not in str(exc) or time.monotonic() > end:
                raise
        time.sleep(0.2)


def queued(gateway: Container) -> int:
    """Packets waiting in the gateway's NFQUEUE now (read from the host's /proc)."""
    gateway.reload()
    pid = gateway.attrs["State"]["Pid"]
    fields = Path(f"/proc/{pid}/net/netfilter/nfnetlink_queue").read_text().split()
    return int(fields[2]) if fields else 0
