"""``--topology``: a typed choice of ``coderun run`` (and refused where it cannot apply)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from snitch.core.settings import NetworkShape, Topology, from_json, to_json
from tests.e2e.conftest import coderun_cmd


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(coderun_cmd(*args), capture_output=True, text=True, timeout=60)


def test_routed_is_the_default_and_pod_travels_to_the_gateway() -> None:
    assert NetworkShape().topology is Topology.ROUTED
    shape = NetworkShape(topology=Topology.POD)
    assert from_json(NetworkShape, to_json(shape)).topology is Topology.POD


def test_a_bad_topology_is_a_clear_usage_error(home: Path) -> None:
    proc = run("run", "--topology", "mesh", "--", "true")
    assert proc.returncode == 2, proc.stderr
    assert "--topology" in proc.stderr and "'mesh' is not one of" in proc.stderr
    assert "routed" in proc.stderr and "pod" in proc.stderr


@pytest.mark.parametrize("user", ["root", "0", "0:1000"])
def test_a_pods_workload_may_not_run_as_the_gateways_uid(home: Path, user: str) -> None:
    proc = run("run", "--topology", "pod", "--user", user, "--", "true")
    assert proc.returncode == 2, proc.stderr
    assert "--user" in proc.stderr and "may not run as uid 0" in proc.stderr


def test_the_pool_keeps_routed_sessions_only(home: Path) -> None:
    proc = run("pool", "start", "--topology", "pod")
    assert proc.returncode == 2, proc.stderr
    assert "routed sessions only" in proc.stderr


def test_help_names_the_topologies() -> None:
    proc = run("run", "--help")
    assert proc.returncode == 0 and "--topology [routed|pod]" in proc.stdout
