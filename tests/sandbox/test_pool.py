"""Claiming warm sessions from the pool folder: by shape, once, never twice (no Docker)."""

from __future__ import annotations

import json
import os
import shutil
import threading
from pathlib import Path
from typing import Any

import pytest

from sandbox import gateway_code, pool
from sandbox.config import SessionConfig
from sandbox.session import Session
from snitch.core.settings import NetworkShape, RunSettings

NO_DOCKER: Any = object()  # claiming only touches files; the client is kept for later


def config(upstream_ca: Path | None = None, **network: Any) -> SessionConfig:
    return SessionConfig(image="img", network=NetworkShape(gateway_image="gw:1", **network),
                         run=RunSettings(command=("true",)), upstream_ca=upstream_ca)


def warm(sid: str, shape: str | None) -> None:
    (pool.pool_dir() / f"{sid}.ready").write_text(json.dumps({"shape": shape}))


def daemon(pid: int) -> None:
    (pool.pool_dir() / "daemon.json").write_text(json.dumps({"pid": pid, "size": 1}))


def states() -> dict[str, str]:
    return {sid: state for sid, state, _ in pool.entries()}


def test_a_run_claims_a_pair_of_its_shape_once(home: Path) -> None:
    daemon(os.getpid())
    mine, other = config(), config(web_ports=())
    assert pool.shape_key(mine) != pool.shape_key(other)
    warm("aaaaaaaaaaaa", pool.shape_key(other))
    warm("bbbbbbbbbbbb", pool.shape_key(mine))
    session = pool.claim(NO_DOCKER, mine)
    assert isinstance(session, Session) and session.id == "bbbbbbbbbbbb" and session.warm
    claimed = json.loads((pool.pool_dir() / "bbbbbbbbbbbb.claimed").read_text())
    assert claimed["claimer"] == os.getpid()
    assert pool.claim(NO_DOCKER, mine) is None
    assert states() == {"aaaaaaaaaaaa": "ready", "bbbbbbbbbbbb": "claimed"}


def test_no_daemon_or_a_per_run_ca_means_no_claim(home: Path, tmp_path: Path) -> None:
    warm("cccccccccccc", pool.shape_key(config()))
    assert pool.claim(NO_DOCKER, config()) is None
    daemon(2**22 + 12345)  # not a live process
    assert pool.claim(NO_DOCKER, config()) is None
    daemon(os.getpid())
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    assert pool.shape_key(config(upstream_ca=ca)) is None
    assert pool.claim(NO_DOCKER, config(upstream_ca=ca)) is None
    assert states() == {"cccccccccccc": "ready"}


def test_gateway_code_changes_change_the_shape_host_code_does_not(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only what is mounted into the gateway (snitch/core, snitch/gateway) is in the
    shape: editing an exporter keeps the warm pairs."""
    copy = tmp_path / "snitch"
    shutil.copytree(gateway_code.snitch_root(), copy)
    monkeypatch.setattr(gateway_code, "snitch_root", lambda: copy)
    before = pool.shape_key(config())
    (copy / "review" / "export" / "nftables.py").write_text("# edited\n")
    assert pool.shape_key(config()) == before
    (copy / "gateway" / "dns.py").write_text("# edited\n")
    assert pool.shape_key(config()) != before
    assert set(gateway_code.gateway_volumes()) == {
        str(copy / "__init__.py"), str(copy / "core"), str(copy / "gateway")}


def test_concurrent_claims_never_share_a_pair(home: Path) -> None:
    daemon(os.getpid())
    key = pool.shape_key(config())
    for n in range(3):
        warm(f"{n:012d}", key)
    won: list[str] = []
    barrier = threading.Barrier(8)

    def claim() -> None:
        barrier.wait()
        session = pool.claim(NO_DOCKER, config())
        if session is not None:
            won.append(session.id)

    threads = [threading.Thread(target=claim) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(won) == [f"{n:012d}" for n in range(3)]
    assert set(states().values()) == {"claimed"}
