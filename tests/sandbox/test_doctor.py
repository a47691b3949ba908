"""``coderun doctor``: every check can fail, says how to fix it, and the exit status and
``--json`` follow (sandbox/doctor.py). On the real engine: tests/e2e/test_doctor.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from sandbox import doctor
from sandbox.cli import main as cli


def test_a_missing_data_dir_is_fine_when_it_can_be_made(tmp_path: Path) -> None:
    check = doctor.check_data_dir(tmp_path / "a" / "home")
    assert check.ok and "will be made" in check.detail


def test_a_data_dir_others_can_read_fails_with_its_fix(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir(mode=0o755)
    home.chmod(0o755)
    check = doctor.check_data_dir(home)
    assert check.status == doctor.FAIL and f"chmod 700 {home}" in check.fix
    home.chmod(0o700)
    assert doctor.check_data_dir(home).ok


def test_a_data_dir_that_is_a_file_fails(tmp_path: Path) -> None:
    (tmp_path / "home").write_text("")
    check = doctor.check_data_dir(tmp_path / "home")
    assert check.status == doctor.FAIL and "not a directory" in check.detail


def test_secrets_must_be_private(tmp_path: Path) -> None:
    (tmp_path / "ca").mkdir()
    token, key = tmp_path / "api-token", tmp_path / "ca" / "mitmproxy-ca.pem"
    for path in (token, key):
        path.write_text("secret")
        path.chmod(0o600)
    (tmp_path / "sessions").mkdir()
    (tmp_path / "sessions" / "flows.jsonl").write_text("")  # not a secret: not looked at
    (tmp_path / "sessions" / "flows.jsonl").chmod(0o644)
    assert doctor.check_secrets(tmp_path).ok
    key.chmod(0o640)
    check = doctor.check_secrets(tmp_path)
    assert check.status == doctor.FAIL and str(key) in check.detail
    assert check.fix.startswith(f"`chmod 600 {key}")
    assert "no API token" in doctor.check_secrets(tmp_path / "none").detail


def test_too_little_disk_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert doctor.check_disk(tmp_path / "home").ok
    monkeypatch.setattr(doctor, "MIN_FREE_BYTES", 2**62)
    check = doctor.check_disk(tmp_path / "home")
    assert check.status == doctor.FAIL and check.fix


def test_the_kernel_report_is_read_strictly() -> None:
    good = {"mount": {"ok": True, "detail": "t0k"}, "nfqueue": {"ok": True, "detail": "q"},
            "conntrack": {"ok": True, "detail": "c"}}  # fmt: skip
    assert [c.status for c in doctor._kernel_checks(good, "t0k")] == [doctor.OK, doctor.OK]
    mounts, kernel = doctor._kernel_checks(good, "other")  # someone else's file arrived
    assert mounts.status == doctor.FAIL and kernel.ok
    bad = {**good, "nfqueue": {"ok": False, "detail": "cannot bind NFQUEUE 7"}}
    mounts, kernel = doctor._kernel_checks(bad, "t0k")
    assert mounts.ok and kernel.status == doctor.FAIL
    assert "cannot bind NFQUEUE 7" in kernel.detail and "modprobe" in kernel.fix


def test_without_an_engine_it_fails_and_says_what_it_could_not_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")
    monkeypatch.setenv("CODERUN_HOME", str(tmp_path / "home"))
    result = CliRunner().invoke(cli, ["doctor", "--json"])
    assert result.exit_code == 1, result.output
    report = json.loads(result.output)
    status = {c["name"]: c["status"] for c in report["checks"]}
    assert report["ok"] is False and status["engine"] == "fail"
    assert status["images"] == status["kernel"] == status["leftovers"] == "skipped"
    assert status["data dir"] == status["secrets"] == status["disk"] == "ok"
    engine = next(c for c in report["checks"] if c["name"] == "engine")
    assert "dockerd" in engine["fix"]
    text = CliRunner().invoke(cli, ["doctor"], env={"NO_COLOR": "1"})
    assert text.exit_code == 1 and "FAIL  engine" in text.output and "\x1b" not in text.output


def test_a_remote_engine_is_not_enough(monkeypatch: pytest.MonkeyPatch) -> None:
    class Api:
        base_url = "http://203.0.113.5:2375"

    class Client:
        api = Api()

        def version(self) -> dict[str, str]:
            return {"Version": "27.0"}

    monkeypatch.setenv("DOCKER_HOST", "tcp://203.0.113.5:2375")
    monkeypatch.setattr("docker.from_env", lambda **_kw: Client())
    client, check = doctor.connect()
    assert client is not None and check.status == doctor.FAIL and "local engine" in check.fix
