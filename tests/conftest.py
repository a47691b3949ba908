"""Fixtures every test folder shares (the folders' own conftest files add theirs)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture()
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private, empty coderun data dir for this test (``CODERUN_HOME``), as coderun
    makes it. A test folder that needs data in it overrides this fixture, asking for it."""
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    monkeypatch.setenv("CODERUN_HOME", str(home))
    return home
