"""The network benchmarks in --smoke mode: they run end to end and produce numbers.

No timing is asserted (CI machines are noisy); only that every figure comes out as a
finite number and that nothing is left behind. The benchmarks run at once, each with
its own containers, to keep this short (a few minutes on a busy machine). Without a
Docker engine or hyperfine they are skipped, except where nothing may be
(tests/needs.py): they fail.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import docker
import pytest

from tests.e2e.conftest import client, tags  # noqa: F401 - the fixtures, reused
from tests.needs import need_tool

pytestmark = pytest.mark.docker

ROOT = Path(__file__).resolve().parents[2]
BENCHES = {
    "gateway": ["bench/bench_gateway.py", "--smoke"],
    "startup": ["bench/bench_startup.py", "--smoke"],
    "memory": ["bench/bench_memory.py", "--smoke"],
    "issue18": ["bench/bench_issue18.py", "--smoke"],
}


@pytest.fixture(scope="module")
def results(
    client: docker.DockerClient,  # noqa: F811
    tags: dict[str, str],  # noqa: F811 - builds the images first
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, Any]:
    need_tool("hyperfine", "the start-up benchmark")
    tmp = tmp_path_factory.mktemp("bench")
    env = {**os.environ, "CODERUN_HOME": str(tmp / "home")}
    procs = {}
    for name, args in BENCHES.items():
        out = tmp / f"{name}.json"
        cmd = [sys.executable, str(ROOT / args[0]), *args[1:], "--json", str(out)]
        procs[name] = (subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, text=True), out)  # fmt: skip
    found: dict[str, Any] = {"pids": [p.pid for p, _ in procs.values()]}
    for name, (proc, out) in procs.items():
        try:
            log, _ = proc.communicate(timeout=420)  # issue 18's takes ~2 min alone
        finally:
            proc.kill()
        assert proc.returncode == 0, f"{name} failed:\n{log[-4000:]}"
        found[name] = json.loads(out.read_text())
    return found


def number(value: object) -> float:
    assert isinstance(value, (int, float)) and not isinstance(value, bool), value
    assert math.isfinite(value), value
    return float(value)


def test_gateway_figures_are_numbers(results: dict[str, Any]) -> None:
    out = results["gateway"]
    for path in ("direct", "bare", "gateway"):
        m = out["connect"][path]["median"]
        assert number(m["p50_us"]) > 0 and number(m["p99_us"]) >= m["p50_us"]
        assert number(out["flows"][path]["median"]["flows_per_s"]) > 0
    gw = out["flows"]["gateway"]["median"]
    for key in ("verdicts", "gw_cpu_us_per_verdict", "gw_rss_max_mb"):
        number(gw[key])
    for path in ("direct", "gateway"):
        assert number(out["bulk"][path]["median"]["mb_per_s"]) > 0
    for mode in ("new", "keep"):
        for path in ("direct", "gateway", "gateway+mitmproxy"):
            assert number(out["http"][mode][path]["median"]["req_per_s"]) > 0
    assert number(out["rss_idle_mb"]["gateway"]) > 0


def test_startup_figures_are_numbers(results: dict[str, Any]) -> None:
    out = results["startup"]
    for command in ("docker run --rm IMAGE true", "coderun run -- true"):
        assert number(out["hyperfine"][command]["median"]) > 0
    assert number(out["phases"]["… at +: gateway ready (gateway.json)"]) > 0
    warm = out["warm_pool"]["coderun run -- true (warm pool)"]
    assert number(warm["median"]) > 0 and warm["failures"] == 0
    calls = [row[2] for row in out["calls"]]  # one CLI run, every Docker call timed
    assert any("POST /containers/create" in c for c in calls), calls
    assert "*closed*" in calls, calls
    assert number(out["docker_floor"]) > 0


def test_issue18_figures_are_numbers(results: dict[str, Any]) -> None:
    out = results["issue18"]
    for path in ("direct", "plain router", "coderun, no kernel cache", "coderun"):
        assert number(out["flows"][path]["median"]["flows_per_s"]) > 0
    for mode in ("new", "keep"):
        for path in ("direct", "coderun", "coderun, through mitmproxy", "coderun, no web ports"):
            assert number(out["http"][mode][path]["median"]["req_per_s"]) > 0
    for mode in ("handshake", "files"):
        for path in ("direct", "coderun", "coderun, through mitmproxy"):
            assert number(out["tls"][mode][path]) > 0
    for command in ("docker", "coderun", "coderun, through mitmproxy"):
        assert number(out["startup"][command]) > 0


def test_memory_figures_are_numbers(results: dict[str, Any]) -> None:
    out = results["memory"]
    for name in ("flows", "http"):
        assert number(out["idle"][name]) > 0
        assert number(out["under_load"][name]) > 0
        soak = out["soak"][name]
        for key in ("start", "end", "max", "growth", "slope_mb_per_min"):
            number(soak[key])
        assert soak["count"] > 0


def test_benchmarks_leave_nothing_behind(
    results: dict[str, Any],
    client: docker.DockerClient,  # noqa: F811
) -> None:
    pids = {str(p) for p in results["pids"]}
    left = [
        c.name
        for c in client.containers.list(all=True)
        if c.labels.get("coderun.owner-pid") in pids
        or c.labels.get("coderun.bench.owner-pid") in pids
    ]
    left += [
        n.name
        for n in client.networks.list()
        if (n.attrs.get("Labels") or {}).get("coderun.owner-pid") in pids
        or (n.attrs.get("Labels") or {}).get("coderun.bench.owner-pid") in pids
    ]
    assert left == []
