"""Issue 12, item 14: the sandbox holds no privilege it does not need.

Each property is read from inside a real sandbox (``privprobe.py``, run by ``coderun
run`` as a script, the way a person runs one): its user, its capabilities, its cgroup
limits (v1 or v2, whichever the engine uses), writes to its root, to ``/etc/hosts`` and
friends, the size of its writable places, and its mount table (no host path of the
data dir, the session folder or the script). ``--user root`` is an opt-in that keeps
every other limit; ``--runtime runsc`` runs the sandbox under gVisor, still behind the
gateway.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import docker
import pytest

from sandbox.internet import DemoInternet
from snitch.core.logentry import EntryKind
from tests.e2e.conftest import Result, coderun_cmd
from tests.needs import need

pytestmark = pytest.mark.docker

HERE = Path(__file__).resolve().parent
PRIVPROBE = HERE / "privprobe.py"
PROBE = HERE.parent / "e2e" / "probe.py"
REFUSED = {"EROFS", "EACCES", "EPERM"}


def probe_output(result: Result) -> dict[str, Any]:
    lines = [x for x in result.stdout.splitlines() if x.startswith("{")]
    assert lines, f"the probe printed nothing (exit {result.status}): {result.stderr}"
    out: dict[str, Any] = json.loads(lines[-1])
    return out


def cpu_quota(cg: dict[str, str | None]) -> float | None:
    """CPUs the quota allows (None: no quota), from cgroup v2's cpu.max or v1's cfs files."""
    if cg["cpu_max"]:
        quota, period = cg["cpu_max"].split()
        return None if quota == "max" else int(quota) / int(period)
    if cg["cfs_quota_us"] and cg["cfs_period_us"]:
        quota_us = int(cg["cfs_quota_us"])
        return None if quota_us < 0 else quota_us / int(cg["cfs_period_us"])
    raise AssertionError(f"no cpu controller visible in the sandbox: {cg}")


def assert_no_swap(cg: dict[str, str | None], memory: int) -> None:
    if cg["swap_max"] is not None:  # cgroup v2
        assert cg["swap_max"] == "0", cg
        assert cg["memory_max"] == str(memory), cg
    else:  # cgroup v1: memory + swap limited to the memory limit
        assert cg["mem_limit"] == str(memory), cg
        assert cg["memsw_limit"] == str(memory), cg


def assert_hides_host_paths(mountinfo: str, home: Path, session_dir: Path) -> None:
    for host_path in (str(home), str(session_dir), str(HERE), "/sessions/"):
        assert host_path not in mountinfo, f"{host_path} in the sandbox's mount table"


def test_default_sandbox_holds_no_privilege(
    run_coderun: Callable[..., Result], home: Path, tmp_path: Path
) -> None:
    out_dir = tmp_path / "out"  # a -v folder of the person's, writable by the sandbox user
    out_dir.mkdir()
    if os.geteuid() == 0:
        os.chown(out_dir, 1000, 1000)
    else:
        out_dir.chmod(0o777)
    result = run_coderun(
        "--cpus", "1.5", "--memory", "512m", "--pids", "256", "--tmpfs-size", "16m",
        "-e", "PRIVPROBE_ALSO=/out", "-v", f"{out_dir}:/out",
        str(PRIVPROBE), "64",
    )  # fmt: skip
    assert result.status == 0, result.stderr
    p = probe_output(result)
    # a user of its own, no capabilities, no way to gain any
    assert (p["uid"], p["euid"], p["gid"]) == (1000, 1000, 1000)
    assert int(p["cap_eff"], 16) == 0 and int(p["cap_prm"], 16) == 0, p
    assert int(p["cap_bnd"], 16) == 0, p
    assert p["no_new_privs"] == "1"
    # limits: CPU quota, memory without swap, pids
    cg = p["cgroups"]
    assert cpu_quota(cg) == 1.5, cg
    assert_no_swap(cg, 512 * 1024 * 1024)
    assert cg["pids_max"] == "256", cg
    # a read-only root: not /etc/hosts, hostname, resolv.conf, nor anything else of it
    for path, outcome in p["writes"].items():
        assert outcome in REFUSED, f"{path}: {outcome}"
    assert p["mkdir_root"] in REFUSED
    # it writes where a program expects to: /tmp, /var/tmp, its home, its workdir, -v
    assert p["home"] == "/home/coderun" and p["cwd"] == "/work"
    assert all(v == "ok" for v in p["writable"].values()), p["writable"]
    assert (out_dir / "coderun-test").stat().st_uid == 1000
    # ... each of them size-limited: /tmp fills up at its 16 MiB
    assert p["tmp_size"] <= 16 * 1024 * 1024
    assert p["fill_tmp"]["stop"] == "ENOSPC" and p["fill_tmp"]["mb"] <= 16, p["fill_tmp"]
    # the mount table shows nothing of coderun's data dir, the session folder, the script
    session_dir = home / "sessions" / result.log[0].session
    assert_hides_host_paths(p["mountinfo"], home, session_dir)
    assert p["script"] == f"/coderun/{PRIVPROBE.name}"


def test_root_is_opt_in_and_keeps_every_other_limit(
    run_coderun: Callable[..., Result], home: Path
) -> None:
    result = run_coderun("--user", "root", "--tmpfs-size", "8m", str(PRIVPROBE))
    assert result.status == 0, result.stderr
    p = probe_output(result)
    assert p["uid"] == 0
    assert int(p["cap_eff"], 16) == 0 and int(p["cap_bnd"], 16) == 0, p
    for path, outcome in p["writes"].items():
        assert outcome in REFUSED, f"{path}: {outcome}"
    assert p["home"] == "/root" and all(v == "ok" for v in p["writable"].values())
    assert cpu_quota(p["cgroups"]) is not None
    session_dir = home / "sessions" / result.log[0].session
    assert_hides_host_paths(p["mountinfo"], home, session_dir)


@pytest.mark.parametrize("user", ["nobody", "1000:x", "-5"])
def test_a_bad_user_is_refused(user: str) -> None:
    proc = subprocess.run(coderun_cmd("run", "--user", user, "--", "true"),
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert proc.returncode == 2 and "expected root, UID or UID:GID" in proc.stderr, proc.stderr


GVISOR_POLICY = """
[[rule]]
action = "allow"
host = "api.example.test"
port = 80
proto = "tcp"
"""


def test_runsc_sandbox_runs_under_gvisor_behind_the_gateway(
    run_coderun: Callable[..., Result],
    client: docker.DockerClient,
    internet: DemoInternet,
    tmp_path: Path,
) -> None:
    need("runsc" in (client.info().get("Runtimes") or {}),
         "the Docker engine has no runsc runtime (gVisor); scripts/setup.sh "
         "installs and registers it when run as root", "CODERUN_REQUIRE_RUNSC")  # fmt: skip
    policy = tmp_path / "policy.toml"
    policy.write_text(GVISOR_POLICY)
    result = run_coderun(
        "--runtime", "runsc", "--policy", str(policy), "-v", f"{PROBE}:/probe.py:ro", "--",
        "sh", "-c", "uname -r; python3 /probe.py http:http://api.example.test/gvisor "
        "connect:evil.example.test:80 connect:" + internet.hosts["tracker.example.test"] + ":80",
    )  # fmt: skip
    assert result.status == 0, result.stderr
    kernel = result.stdout.splitlines()[0]
    assert kernel == "4.4.0" != os.uname().release, kernel  # gVisor's, not the host's
    steps = {d["step"]: d for d in map(json.loads, result.stdout.splitlines()[1:])}
    assert steps["http:http://api.example.test/gvisor"]["ok"], steps
    assert steps["http:http://api.example.test/gvisor"]["detail"].startswith("200")
    assert not steps["connect:evil.example.test:80"]["ok"]
    tracker = internet.hosts["tracker.example.test"]
    assert not steps[f"connect:{tracker}:80"]["ok"]
    # the gateway decided each of them, and logged it
    assert result.flows(dst=internet.ip, dport=80, verdict="allow")
    assert result.dns(qname="evil.example.test", verdict="deny")
    assert result.flows(dst=tracker, dport=80, verdict="deny")
    assert [e for e in result.log if e.kind is EntryKind.HTTP and "/gvisor" in e.url]


@pytest.mark.parametrize("option", ["--memory", "--tmpfs-size"])
def test_a_bad_size_is_refused(option: str) -> None:
    proc = subprocess.run(
        coderun_cmd("run", option, "lots", "--", "true"), capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2 and "a size like 512m" in proc.stderr, proc.stderr
