"""Executable profiles on a real engine (issue 16): ``./tool.toml ARGS`` from a shell,
the profile's own rules decide, a bad profile is refused with line:col before anything
starts, and ``--save-rules`` writes a person's decision into the file."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import docker

from sandbox.internet import DemoInternet
from sandbox.line_prompt import SETTLE_SECONDS
from sandbox.profiles import SHEBANG, load_profile
from snitch.core.store import RuleStore
from tests.approver.terminal import Terminal, cli_env
from tests.e2e.conftest import coderun_cmd, latest_log, leftovers

PROBE = Path(__file__).with_name("probe.py")
ROOT = Path(__file__).resolve().parents[2]


def _profile(path: Path, internet: DemoInternet, mode: str, rules: str = "") -> Path:
    path.write_text(f"""{SHEBANG}
# the probe, against the demo internet
image = "python"
command = ["python3", "/probe.py"]
mounts = ["{PROBE}:/probe.py:ro"]
mode = "{mode}"
ask_timeout = 60
egress_network = "{internet.network_name}"
dns_upstream = "{internet.ip}"
{rules}""")
    path.chmod(0o755)
    return path


ALLOW_API = """
[[rule]]
action = "allow"
host = "api.example.test"
port = 80
proto = "tcp"
"""


def _shell_env(home: Path) -> dict[str, str]:
    """A user's shell: ``coderun`` on PATH (this venv's, running this tree's code)."""
    env = cli_env(home)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = str(ROOT)
    return env


def _steps(stdout: str) -> dict[str, dict[str, object]]:
    out = {}
    for line in stdout.splitlines():
        if line.startswith("{"):
            step = json.loads(line)
            out[str(step["step"]).split(":")[0] + ":" + str(step["step"]).split(":")[1]] = step
    return out


def test_an_executable_profile_runs_from_a_shell_with_its_own_rules(
    home: Path, internet: DemoInternet, tags: dict[str, str], tmp_path: Path,
    client: docker.DockerClient,
) -> None:  # fmt: skip
    assert shutil.which("env")
    _profile(tmp_path / "probe.toml", internet, "enforce", ALLOW_API)
    args = "http:http://api.example.test/profile connect:evil.example.test:80"
    proc = subprocess.run(["bash", "-c", f"cd {shlex.quote(str(tmp_path))} && ./probe.toml {args}"],
                          env=_shell_env(home), capture_output=True, text=True,
                          timeout=180)  # fmt: skip
    assert proc.returncode == 0, (proc.stdout, proc.stderr)
    steps = _steps(proc.stdout)
    assert steps["http:http"]["ok"] is True
    assert "hello from api.example.test /profile" in str(steps["http:http"]["detail"])
    assert steps["connect:evil.example.test"]["ok"] is False  # no rule: enforce denies
    log = latest_log(home)
    verdicts = {e.names[0]: e.verdict for e in log if e.kind == "flow" and e.names}
    assert verdicts.get("api.example.test") == "allow"
    assert "evil.example.test" not in verdicts  # its lookup was already refused
    assert any(e.kind == "dns" and e.qname == "evil.example.test" and e.verdict == "deny"
               for e in log)  # fmt: skip
    session = json.loads(sorted((home / "sessions").glob("*/session.json"),
                                key=lambda p: p.stat().st_mtime)[-1].read_text())  # fmt: skip
    assert session["command"] == ["python3", "/probe.py", *args.split()]
    # The rule was the profile's, for its runs: the store holds nothing, and the same
    # command without the profile is denied.
    assert not (home / "rules" / "rules.db").exists() or RuleStore(
        home / "rules" / "rules.db").list() == []  # fmt: skip
    plain = subprocess.run(
        coderun_cmd("run", "--mode", "enforce", "--image", "python", "--egress-network",
                    internet.network_name, "--dns-upstream", internet.ip,
                    "-v", f"{PROBE}:/probe.py:ro", "--", "python3", "/probe.py",
                    "http:http://api.example.test/plain"),
        env=_shell_env(home), capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert _steps(plain.stdout)["http:http"]["ok"] is False, plain.stdout
    assert leftovers(client) == []


def test_a_bad_profile_is_refused_with_line_and_column_before_anything_starts(
    home: Path, tmp_path: Path, client: docker.DockerClient,
) -> None:  # fmt: skip
    bad = tmp_path / "bad.toml"
    bad.write_text(f'{SHEBANG}\nimage = "python"\ncommand = ["true"]\n\n[[rule]]\n'
                   'action = "allow"\nhost = "api..example.test"\n')  # fmt: skip
    bad.chmod(0o755)
    env = _shell_env(home)
    check = subprocess.run(coderun_cmd("profiles", "check", str(bad)), env=env,
                           capture_output=True, text=True, timeout=60)  # fmt: skip
    assert check.returncode == 2
    assert f"{bad}:7:1: rule 1: bad host" in check.stderr, check.stderr
    ran = subprocess.run(["bash", "-c", f"{shlex.quote(str(bad))} arg"], env=env,
                         capture_output=True, text=True, timeout=60)  # fmt: skip
    assert ran.returncode == 2
    assert f"{bad}:7:1: rule 1: bad host" in ran.stderr, ran.stderr
    # Nothing started: a session (its folder comes first) was never made.
    assert not (home / "sessions").exists() or not list((home / "sessions").iterdir())


def test_save_rules_writes_a_decision_into_the_profile(
    home: Path, internet: DemoInternet, tags: dict[str, str], tmp_path: Path,
) -> None:  # fmt: skip
    path = _profile(tmp_path / "saved.toml", internet, "enforce")
    args = coderun_cmd("exec", "--save-rules", "--mode", "ask", "--prompt", "line", str(path),
                       "http:http://api.example.test/saved")  # fmt: skip
    term = Terminal(args, _shell_env(home))
    try:
        term.wait_for(b"Allow connection to api.example.test")
        time.sleep(SETTLE_SECONDS + 0.15)
        term.type("A\n")
        term.wait_for(b"type api.example.test to store it")
        time.sleep(SETTLE_SECONDS + 0.15)
        term.type("api.example.test\n")
        term.wait_for(b"allowed always: api.example.test 80/tcp")
        assert term.wait(90) == 0
    finally:
        term.close()
    assert b"saved into" in term.shown()
    rules = load_profile(path).rules
    assert [(r.action, r.host, r.port_lo, r.proto) for r in rules] == [
        ("allow", "api.example.test", 80, "tcp")]  # fmt: skip
    # The profile now carries its allowlist: with an empty rule store, in its own enforce
    # mode, the same request passes.
    fresh = tmp_path / "fresh-home"
    fresh.mkdir()
    again = subprocess.run(coderun_cmd("exec", str(path), "http:http://api.example.test/again"),
                           env=_shell_env(fresh), capture_output=True, text=True,
                           timeout=180)  # fmt: skip
    assert _steps(again.stdout)["http:http"]["ok"] is True, (again.stdout, again.stderr)
