"""The data dir is private and this user's (sandbox/paths.py)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from sandbox import paths
from sandbox.cli import main as cli
from tests.needs import need_root


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def test_a_new_data_dir_is_private(home: Path) -> None:
    assert paths.data_dir() == home
    paths.api_token()
    paths.rules_db()
    paths.sessions_dir()
    paths.ca_dir()
    paths.write_private(home / "sessions" / "x.json", "{}")
    for path in [home, *home.rglob("*")]:
        assert mode(path) == (0o700 if path.is_dir() else 0o600), path


def test_an_older_data_dir_is_tightened_and_its_store_moved(home: Path) -> None:
    (home / "sessions" / "abc").mkdir(parents=True)
    home.chmod(0o755)
    (home / "sessions").chmod(0o755)
    for name in ("rules.db", "rules.db-wal", "rules.db.bak-v1-1"):
        (home / name).write_text(name)
    (home / "sessions" / "abc" / "flows.jsonl").write_text("{}\n")
    for path in home.rglob("*"):
        if path.is_file():
            path.chmod(0o644)
    assert paths.rules_db() == home / "rules" / "rules.db"
    assert (home / "rules" / "rules.db").read_text() == "rules.db"
    assert (home / "rules" / "rules.db-wal").read_text() == "rules.db-wal"
    assert (home / "rules" / "rules.db.bak-v1-1").exists()
    assert not list(home.glob("rules.db*"))
    for path in [home, *home.rglob("*")]:
        assert mode(path) == (0o700 if path.is_dir() else 0o600), path


def test_a_store_already_moved_wins(home: Path) -> None:
    (home / "rules").mkdir(parents=True)
    (home / "rules" / "rules.db").write_text("new")
    (home / "rules.db").write_text("stale")
    assert paths.rules_db().read_text() == "new"
    assert (home / "rules.db").read_text() == "stale"  # left alone, not lost


def test_write_private_replaces_atomically(tmp_path: Path) -> None:
    target = tmp_path / "claim.json"
    target.write_text("old")
    target.chmod(0o644)
    paths.write_private(target, b"new")
    assert target.read_text() == "new" and mode(target) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["claim.json"]


def test_a_data_dir_owned_by_someone_else_is_refused(home: Path) -> None:
    need_root("making a folder someone else owns")
    os.chown(home, 4321, 4321)
    with pytest.raises(paths.DataDirError, match="belongs to uid 4321"):
        paths.data_dir()
    for args in (["rules", "list"], ["log"], ["sessions"], ["dashboard"]):
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 1, (args, result.output)
        assert "belongs to uid 4321, not to you" in result.output, (args, result.output)
        assert "Traceback" not in result.output
    assert os.listdir(home) == []  # nothing written into it


def test_a_data_dir_that_is_a_file_is_refused(home: Path) -> None:
    home.rmdir()
    home.write_text("")
    with pytest.raises(paths.DataDirError, match="not a directory"):
        paths.data_dir()
