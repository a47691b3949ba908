"""Issue 15: ``--share`` through a real kernel FUSE mount (mfusepy, libfuse3) into a
real sandbox: reads work and are logged as ``file`` entries with bytes at close; a
read-only share refuses writes; symlinks are shown, never followed on the host;
hard links, device nodes and setuid bits are refused; a writable share cannot grow a
file past --share-max-mb; the daemon killed mid-run leaves the sandbox with errors, not
files; nothing stays mounted after the run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from sandbox.shares.mounts import fuse_mounts
from tests.e2e.conftest import Result, coderun_cmd, wait_for

pytestmark = pytest.mark.docker


@pytest.fixture()
def shared(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    (root / "sub").mkdir(parents=True)
    (root / "a.txt").write_text("hello from the share\n")
    (tmp_path / "outside.txt").write_text("host secret outside the share\n")
    (root / "sub" / "up").symlink_to("../../outside.txt")  # host-relative: leads out
    (root / "abs").symlink_to(tmp_path / "outside.txt")
    os.chmod(tmp_path, 0o755)
    return root


def file_lines(home: Path) -> list[dict[str, object]]:
    sessions = sorted((home / "sessions").iterdir(), key=lambda p: p.stat().st_mtime)
    path = sessions[-1] / "files.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_a_share_serves_reads_refuses_escapes_and_logs(
    run_coderun: Callable[..., Result], shared: Path, home: Path
) -> None:
    script = "; ".join([
        "cat /s/a.txt",
        "cat /s/sub/up 2>/dev/null && echo ESCAPED-up || echo up-refused",
        "cat /s/abs 2>/dev/null && echo ESCAPED-abs || echo abs-refused",
        "cat /s/../s/a.txt >/dev/null && echo dotdot-inside",
        "echo x > /s/new 2>/dev/null && echo WROTE || echo ro-refused",
        "true",
    ])  # fmt: skip
    result = run_coderun("--mode", "audit", "--share", f"{shared}:/s", "--", "sh", "-c", script)
    assert result.status == 0, result.stderr
    assert result.stdout.splitlines() == [
        "hello from the share", "up-refused", "abs-refused", "dotdot-inside", "ro-refused",
    ], result.stderr  # fmt: skip
    assert not (shared / "new").exists()
    lines = file_lines(home)
    opened = [line for line in lines if line.get("method") == "read"]
    assert {"/s/a.txt"} <= {line["names"][0] for line in opened}  # type: ignore[index]
    closes = [line for line in lines if line.get("method") == "close"
              and line["names"] == ["/s/a.txt"]]  # fmt: skip
    assert closes and closes[0]["bytes_in"] == len("hello from the share\n")
    assert not [m for m in fuse_mounts() if str(home) in m]  # unmounted with the session
    # `coderun log` shows them (merged with the gateway's log), as JSON too.
    log = subprocess.run(coderun_cmd("log", "--kind", "file", "--json"), capture_output=True,
                         text=True, timeout=60)  # fmt: skip
    assert log.returncode == 0, log.stderr
    shown = [json.loads(line) for line in log.stdout.splitlines() if line.strip()]
    assert any(e.get("names") == ["/s/a.txt"] and e.get("method") == "read" for e in shown), shown


def test_a_writable_share_refuses_links_devices_setuid_and_growth(
    run_coderun: Callable[..., Result], shared: Path, home: Path
) -> None:
    script = "; ".join([
        "echo data > /s/made && echo made",
        "ln /s/a.txt /s/hard 2>/dev/null && echo LINKED || echo link-refused",
        "ln -s /etc/passwd /s/sym 2>/dev/null && echo SYMLINKED || echo symlink-refused",
        "mkfifo /s/fifo 2>/dev/null && echo FIFO || echo mknod-refused",
        "chmod 4755 /s/made; stat -c %a /s/made",
        "head -c 2000000 /dev/zero > /s/big 2>/dev/null && echo GREW || echo too-big",
        "true",
    ])  # fmt: skip
    result = run_coderun("--mode", "audit", "--share", f"{shared}:/s:rw", "--share-max-mb", "1",
                         "--", "sh", "-c", script)  # fmt: skip
    assert result.status == 0, result.stderr
    assert result.stdout.splitlines() == [
        "made", "link-refused", "symlink-refused", "mknod-refused", "755", "too-big",
    ], result.stderr  # fmt: skip
    assert (shared / "made").read_text() == "data\n"
    assert (shared / "made").stat().st_mode & 0o7777 == 0o755
    assert not (shared / "hard").exists() and not (shared / "sym").is_symlink()
    assert (shared / "big").stat().st_size <= 1024 * 1024


def test_the_daemon_killed_mid_run_leaves_errors_not_files(
    internet: object, shared: Path, home: Path, tags: dict[str, str]
) -> None:
    from sandbox.internet import DemoInternet

    assert isinstance(internet, DemoInternet)
    loop = "for i in $(seq 300); do cat /s/a.txt >/dev/null 2>/tmp/err || break; sleep 0.1; done"
    script = f"cat /s/a.txt; echo READ; {loop}; cat /tmp/err; ls /s 2>&1 | head -1"
    cmd = coderun_cmd("run", "--egress-network", internet.network_name, "--dns-upstream",
                      internet.ip, "--mode", "audit", "--share", f"{shared}:/s", "--",
                      "sh", "-c", script)  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "hello from the share\n"
        assert proc.stdout.readline() == "READ\n"
        pids = list((home / "sessions").glob("*/shares/0.pid"))
        assert len(pids) == 1
        os.kill(int(pids[0].read_text()), signal.SIGKILL)  # the daemon this test's run started
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "Transport endpoint is not connected" in out, (out, err)
    assert "hello" not in out
    wait_for(lambda: not [m for m in fuse_mounts() if str(home) in m], "the share unmounted", 10)
