"""Fixtures every test folder shares (the folders' own conftest files add theirs)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture()
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private, empty coderun data dir for this test (``CODERUN_HOME``), as coderun
    makes it. A test folder that needs data in it overrides this fixture, asking for it."""
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    monkeypatch.setenv("CODERUN_HOME", str(home))
    return home


@pytest.fixture(scope="session", autouse=True)
def shared_egress_left_as_found() -> Iterator[None]:
    """Runs share a long-lived egress network (sandbox/egress.py) that their clean-up
    keeps; a test session that made it removes it at its end (one it found stays)."""
    client = _docker()
    existed = client is not None and bool(_shared(client))
    yield
    if client is not None and not existed and _shared(client):
        from sandbox.egress import remove_shared

        remove_shared(client)


def _docker() -> Any:
    try:
        import docker

        client = docker.from_env()
        client.ping()
        return client
    except Exception:  # no Docker here: the unit tests run without it
        return None


def _shared(client: Any) -> list[Any]:
    from sandbox.egress import shared_networks

    try:
        return shared_networks(client)
    except Exception:
        return []
