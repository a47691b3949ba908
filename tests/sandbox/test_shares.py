"""--share without Docker: the option's forms, and a real FUSE mount that ``coderun gc``
unmounts once the run that made it is gone (sandbox/shares/)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sandbox.shares.mounts import fuse_mounts, gc_shares, start_shares
from sandbox.shares.spec import ShareSpecError, parse_share
from tests.needs import need_root, need_tool


def test_share_forms(tmp_path: Path) -> None:
    (tmp_path / "f.txt").write_text("x")
    folder = parse_share(str(tmp_path))
    assert folder.target == f"/shares/{tmp_path.name}" and not folder.writable
    assert folder.only is None
    file = parse_share(f"{tmp_path}/f.txt:/home/coderun/.aws/credentials:rw")
    assert file.target == "/home/coderun/.aws/credentials" and file.writable
    assert file.only == "f.txt" and file.folder == tmp_path.resolve()
    for bad in (f"{tmp_path}/missing", f"{tmp_path}:relative", f"{tmp_path}:/", ":/x",
                f"{tmp_path}:/a:/b"):  # fmt: skip
        with pytest.raises(ShareSpecError):
            parse_share(bad)


def test_gc_unmounts_the_shares_of_a_run_that_is_gone(tmp_path: Path) -> None:
    need_tool("fusermount3", "--share mounts")
    need_root("a FUSE mount with allow_other")
    sessions = tmp_path / "sessions"
    session = sessions / "abc"
    session.mkdir(parents=True)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.txt").write_text("hi")
    mounted = start_shares([parse_share(str(tmp_path / "data"))], session, "abc", 1 << 20)
    try:
        mount = str(session / "shares" / "0")
        assert mount in fuse_mounts()
        assert (session / "shares" / "0" / "a.txt").read_text() == "hi"
        assert gc_shares(sessions) == []  # its run (this process) still goes
        (session / "shares" / "owner").write_text("999999999")  # a run that is gone
        assert gc_shares(sessions) == [mount]
        assert mount not in fuse_mounts()
        mounted.mounted[0].process.wait(10)  # the daemon ends with its mount
    finally:
        mounted.stop()
