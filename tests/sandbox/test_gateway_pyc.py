"""The compiled copy of the gateway's code (sandbox/gateway_pyc.py): made once per code
digest, whole or not at all, mounted instead of the installed package when there is one.
A fake engine stands in for the compiling container (tests/e2e/test_gateway_pyc.py runs
the real one)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import docker.errors
import pytest

from sandbox import gateway_code, gateway_pyc


class FakeContainers:
    """``containers.run`` that writes a bytecode file next to every module, or fails."""

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.runs: list[dict[str, Any]] = []

    def run(self, image: str, **kw: Any) -> None:
        self.runs.append({"image": image, **kw})
        if self.fail:
            raise docker.errors.APIError("no engine")
        (work,) = kw["volumes"]
        for source in Path(work).rglob("*.py"):
            cache = source.parent / "__pycache__"
            cache.mkdir(exist_ok=True)
            (cache / f"{source.stem}.cpython-313.opt-1.pyc").write_bytes(b"pyc")


class FakeClient:
    def __init__(self, fail: bool = False) -> None:
        self.containers = FakeContainers(fail)


@pytest.fixture()
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CODERUN_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_made_once_per_digest_and_mounted(cache: Path) -> None:
    assert gateway_code.compiled_copy() is None
    installed = gateway_code.gateway_volumes()
    assert set(installed) == {str(gateway_code.snitch_root() / p)
                              for p in ("__init__.py", "core", "gateway")}  # fmt: skip
    client = FakeClient()
    copy = gateway_pyc.prepare(client, "gw:1")  # type: ignore[arg-type]
    assert copy is not None and copy == gateway_code.compiled_copy()
    assert copy.parent.name == gateway_code.code_digest()
    (run,) = client.containers.runs
    assert run["image"] == "gw:1" and run["network_mode"] == "none"
    assert run["user"] == f"{os.getuid()}:{os.getgid()}" and run["cap_drop"] == ["ALL"]
    assert (copy / "gateway" / "__pycache__" / "main.cpython-313.opt-1.pyc").exists()
    assert (copy / "core" / "model.py").read_bytes() == (
        gateway_code.snitch_root() / "core" / "model.py"
    ).read_bytes()
    assert not list(copy.rglob("*.cpython-311*.pyc"))  # the host's bytecode is not copied
    assert sorted(p.name for p in copy.iterdir()) == ["__init__.py", "__pycache__", "core",
                                                      "gateway"]  # fmt: skip
    assert gateway_code.gateway_volumes() == {
        str(copy): {"bind": gateway_code.MOUNT_ROOT, "mode": "ro"}
    }
    assert gateway_pyc.prepare(client, "gw:1") == copy  # type: ignore[arg-type]
    assert len(client.containers.runs) == 1
    assert [p.name for p in cache.joinpath(gateway_code.COMPILED).iterdir()] == [copy.parent.name]


def test_no_copy_when_it_cannot_be_made(cache: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert gateway_pyc.prepare(FakeClient(fail=True), "gw:1") is None  # type: ignore[arg-type]
    assert "compiles it at each start" in capsys.readouterr().err
    assert list(cache.joinpath(gateway_code.COMPILED).iterdir()) == []  # no half copy
    assert str(gateway_code.snitch_root() / "core") in gateway_code.gateway_volumes()


def test_old_copies_go_when_a_new_one_is_made(cache: Path) -> None:
    root = cache / gateway_code.COMPILED
    old, recent = root / ("0" * 16), root / ("1" * 16)
    for folder in (old, recent):
        (folder / "snitch").mkdir(parents=True)
    long_ago = time.time() - gateway_pyc.KEEP_SECONDS - 60
    os.utime(old, (long_ago, long_ago))
    assert gateway_pyc.prepare(FakeClient(), "gw:1") is not None  # type: ignore[arg-type]
    assert not old.exists() and recent.exists()
