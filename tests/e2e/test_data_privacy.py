"""Issue 12, item 16: files on the host.

Everything a real run (and a warm pool's run) leaves in the data dir is private (dirs
0700, files 0600, owned by the user); the gateway container sees only what it needs of
the data dir: its own session folder, the rule store, the API token and, only when it
intercepts TLS, the CA (asked from inside it, with ``find``); a data dir owned by
someone else is refused before anything starts.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
from docker.models.containers import Container

from sandbox.internet import DemoInternet
from tests.e2e.conftest import coderun_cmd, wait_for
from tests.needs import need_root

pytestmark = pytest.mark.docker

PROBE = Path(__file__).with_name("probe.py")
POLICY = """
[[rule]]
action = "allow"
host = "api.example.test"
"""


def cli(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(coderun_cmd(*args), capture_output=True, text=True, timeout=timeout)


def net_args(internet: DemoInternet) -> list[str]:
    return ["--egress-network", internet.network_name, "--dns-upstream", internet.ip]


def not_private(home: Path) -> list[str]:
    """Everything under ``home`` (and itself) that is not 0700/0600 and this user's."""
    bad = []
    for path in [home, *home.rglob("*")]:
        st = path.lstat()
        want = 0o700 if stat.S_ISDIR(st.st_mode) else 0o600
        if stat.S_IMODE(st.st_mode) != want or st.st_uid != os.geteuid():
            bad.append(f"{oct(stat.S_IMODE(st.st_mode))} uid {st.st_uid} {path}")
    return bad


def gateway_of(client: docker.DockerClient, session: str) -> Container:
    selector = {"label": [f"coderun.session={session}", "coderun.role=gateway"]}
    found = wait_for(lambda: client.containers.list(filters=selector), f"{session}'s gateway")
    assert isinstance(found, list) and len(found) == 1, found
    gateway: Container = found[0]
    return gateway


def seen_by_gateway(gateway: Container) -> list[str]:
    code, out = gateway.exec_run(["find", "/data"])
    assert code == 0, out
    return sorted(out.decode().split())


def assert_sees_only_its_own(seen: list[str], session: str, ca: bool) -> None:
    folders = {"/data", "/data/sessions"}  # the mount points' parents, empty otherwise
    trees = [f"/data/sessions/{session}", "/data/rules", "/data/api-token",
             *(["/data/ca"] if ca else [])]  # fmt: skip

    def inside(path: str) -> bool:
        return path in folders or any(path == t or path.startswith(t + "/") for t in trees)

    strays = [p for p in seen if not inside(p)]
    assert strays == [], strays
    assert f"/data/sessions/{session}/flows.jsonl" in seen
    assert "/data/rules/rules.db" in seen and "/data/api-token" in seen
    assert ("/data/ca/mitmproxy-ca.pem" in seen) is ca, seen


def ready(folder: Path) -> bool:
    try:
        state = json.loads((folder / "gateway.json").read_text())
    except (OSError, ValueError):
        return False
    return bool(state.get("state") == "ready" and state.get("mitm"))


@pytest.fixture()
def ctl(tmp_path: Path) -> Path:
    folder = tmp_path / "ctl"
    folder.mkdir()
    folder.chmod(0o777)  # the sandbox's user waits for "go" here
    return folder


WAIT_FOR_GO = ["sh", "-c", "while [ ! -e /ctl/go ]; do sleep 0.05; done; echo went"]


def test_a_run_leaves_only_private_files_and_its_gateway_sees_only_its_own(
    home: Path, internet: DemoInternet, client: docker.DockerClient, tmp_path: Path, ctl: Path
) -> None:
    older = cli("run", *net_args(internet), "--", "true")  # another session, to be hidden
    assert older.returncode == 0, older.stderr
    (older_id,) = [p.name for p in (home / "sessions").iterdir()]
    policy, upstream_ca = tmp_path / "policy.toml", tmp_path / "upstream.pem"
    policy.write_text(POLICY)
    upstream_ca.write_bytes(internet.ca_pem())
    proc = subprocess.Popen(
        coderun_cmd("run", *net_args(internet), "--intercept-tls", "--upstream-ca",
                    str(upstream_ca), "--policy", str(policy), "-v", f"{ctl}:/ctl", "--",
                    *WAIT_FOR_GO),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:

        def new_session() -> str | None:
            for p in (home / "sessions").iterdir():
                if p.name != older_id and (p / "session.json").exists():
                    return p.name
            return None

        session = wait_for(new_session, "the run's session")
        assert isinstance(session, str)
        wait_for(lambda: ready(home / "sessions" / session), "the gateway and mitmproxy")
        seen = seen_by_gateway(gateway_of(client, session))
    finally:
        (ctl / "go").touch()
        out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0 and "went" in out, err
    assert_sees_only_its_own(seen, session, ca=True)
    assert not any(older_id in p for p in seen)
    # What the runs left: sessions (logs, records, policy and CA copies), the rule
    # store, the token, the CA, the pool folder: private, every one.
    assert (home / "ca" / "mitmproxy-ca.pem").exists()
    assert (home / "sessions" / session / "policy.toml").exists()
    assert not_private(home) == []


def test_a_warm_gateway_sees_only_its_own_and_the_pool_is_private(
    home: Path, internet: DemoInternet, client: docker.DockerClient, tmp_path: Path
) -> None:
    started = cli("pool", "start", *net_args(internet))
    assert started.returncode == 0, started.stderr + started.stdout
    try:
        ready = [p.name.split(".")[0] for p in (home / "pool").glob("*.ready")]
        assert len(ready) == 1
        assert_sees_only_its_own(seen_by_gateway(gateway_of(client, ready[0])), ready[0], ca=False)
        # the probe as a script: copied in through the warm pair's holder
        policy = tmp_path / "policy.toml"
        policy.write_text(POLICY)
        run = cli("run", *net_args(internet), "--policy", str(policy), str(PROBE),
                  "http:http://api.example.test/pooled")  # fmt: skip
        assert run.returncode == 0 and '"ok": true' in run.stdout, run.stderr + run.stdout
        assert (home / "sessions" / ready[0] / "claim.json").exists()  # it was claimed
        assert not_private(home) == []
    finally:
        cli("pool", "stop")
    assert not_private(home) == []


@pytest.fixture()
def foreign_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    need_root("making a folder someone else owns")
    folder = tmp_path / "theirs"
    folder.mkdir(mode=0o700)
    os.chown(folder, 4321, 4321)
    monkeypatch.setenv("CODERUN_HOME", str(folder))
    yield folder


def test_a_data_dir_owned_by_someone_else_is_refused(
    foreign_home: Path, internet: DemoInternet, client: docker.DockerClient
) -> None:
    proc = subprocess.Popen(coderun_cmd("run", *net_args(internet), "--", "true"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 1, err
    assert f"data dir {foreign_home} belongs to uid 4321, not to you" in err, err
    assert "Traceback" not in err
    assert (
        client.containers.list(all=True, filters={"label": f"coderun.owner-pid={proc.pid}"}) == []
    )
    assert os.listdir(foreign_home) == []
    for args in (["rules", "list"], ["log"], ["pool", "start"]):
        result = cli(*args)
        assert result.returncode == 1 and "belongs to uid 4321" in result.stderr, (args, result)
    assert os.listdir(foreign_home) == []


def test_gateway_state_file_says_stopped_and_private(home: Path, internet: DemoInternet) -> None:
    """The gateway writes as root in its container; its files are the user's, 0600."""
    result = cli("run", *net_args(internet), "--", "true")
    assert result.returncode == 0, result.stderr
    (session,) = (home / "sessions").iterdir()
    state = json.loads((session / "gateway.json").read_text())
    assert state["state"] == "stopped" and state["log_dropped"] == 0
    assert not_private(home) == []
