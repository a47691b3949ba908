"""``coderun doctor`` on the real engine: it passes here, and its kernel probe can fail."""

from __future__ import annotations

import json
from pathlib import Path

import docker
from click.testing import CliRunner

from sandbox.cli import main as cli
from sandbox.gateway_code import gateway_volumes


def test_doctor_passes_on_this_machine(
    client: docker.DockerClient, tags: dict[str, str], home: Path
) -> None:
    from sandbox.cleanup import gc

    gc(client)  # what interrupted runs (of any test) left would fail "leftovers"
    home.chmod(0o700)  # the fixture's is 0755: that fails "data dir" (as it should)
    result = CliRunner().invoke(cli, ["doctor", "--json"])
    report = json.loads(result.output)
    failed = [c for c in report["checks"] if c["status"] != "ok"]
    assert result.exit_code == 0 and report["ok"] and not failed, failed
    names = [c["name"] for c in report["checks"]]
    assert names == ["engine", "images", "mounts", "kernel", "leftovers", "data dir",
                     "secrets", "disk"]  # fmt: skip


def test_the_kernel_probe_fails_without_what_it_needs(
    client: docker.DockerClient, tags: dict[str, str]
) -> None:
    """Without NET_ADMIN no NFQUEUE rule can be added: the probe must say so."""
    out = client.containers.run(
        tags["gateway"], entrypoint=["python3", "-m", "snitch.gateway.selftest"],
        network_mode="none", cap_drop=["ALL"], volumes=gateway_volumes(), remove=True,
        labels={"coderun.role": "test"},
    )  # fmt: skip
    report = json.loads(bytes(out).decode().strip().splitlines()[-1])
    assert report["nfqueue"]["ok"] is False and "iptables" in report["nfqueue"]["detail"]
    assert report["conntrack"]["ok"] is False
    assert report["mount"]["ok"] is False  # no /probe given
