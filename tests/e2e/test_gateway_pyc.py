"""The gateway's code compiled ahead (sandbox/gateway_pyc.py) on the real engine: the
gateway image's Python compiles a copy once, and a gateway that mounts it compiles no
module of its own at its start (it did each time before)."""

from __future__ import annotations

from pathlib import Path

import docker
import pytest

from sandbox import gateway_code, gateway_pyc


def _compiled_at_start(client: docker.DockerClient, image: str) -> list[str]:
    """The modules of the snitch package the gateway's Python compiles from their source
    as it imports its main module (``python3 -v``: 'code object from' a .py file)."""
    out = client.containers.run(
        image, entrypoint=["python3", "-v", "-c", "import snitch.gateway.main"],
        network_mode="none", cap_drop=["ALL"], volumes=gateway_code.gateway_volumes(),
        remove=True, stdout=False, stderr=True, labels={"coderun.role": "test"},
    )  # fmt: skip
    lines = bytes(out).decode(errors="replace").splitlines()
    loaded = [line for line in lines if "code object from" in line and "/snitch/" in line]
    assert loaded, "the gateway's import said nothing of its modules"
    return [line for line in loaded if line.rstrip("'").endswith(".py")]


def test_a_gateway_mounting_the_compiled_copy_compiles_nothing(
    client: docker.DockerClient, tags: dict[str, str], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.setenv("CODERUN_CACHE", str(tmp_path / "cache"))
    assert gateway_code.compiled_copy() is None
    assert len(_compiled_at_start(client, tags["gateway"])) > 20  # the installed package
    copy = gateway_pyc.prepare(client, tags["gateway"])
    assert copy is not None and copy.is_relative_to(tmp_path)
    opt = list(copy.rglob("*.cpython-3*.opt-1.pyc"))  # the gateway runs with -O
    assert len(opt) == len(list(copy.rglob("*.py")))
    assert _compiled_at_start(client, tags["gateway"]) == []
    assert gateway_pyc.prepare(client, tags["gateway"]) == copy
