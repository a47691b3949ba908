"""Issue 14: the wheel, installed in a fresh venv and run from a temporary directory,
has every command, every data file, passes ``coderun doctor`` and makes a real run."""

from __future__ import annotations

import json
from pathlib import Path

import docker
import pytest

from sandbox import images
from sandbox.internet import start_internet
from tests.install.conftest import ROOT, Installed

# Building the wheel and its venv (the first test), or images that are not built yet,
# can take longer than the suite's default per-test limit.
pytestmark = pytest.mark.timeout(1500)

# Run by the venv's python: every command of the click tree, found by walking it as
# click does (lazy groups included), gets --help. Prints what it found as JSON.
WALK = r"""
import json
import click
from click.testing import CliRunner
from sandbox.cli import main

found, bad = [], []

def walk(command, path, ctx):
    found.append(path)
    if not isinstance(command, click.Group):
        return
    for name in command.list_commands(ctx):
        try:
            sub = command.get_command(ctx, name)
        except Exception as exc:
            bad.append({"path": path + [name], "error": repr(exc)})
            continue
        if sub is None:
            bad.append({"path": path + [name], "error": "listed but not found"})
            continue
        walk(sub, path + [name], click.Context(sub, info_name=name, parent=ctx))

walk(main, [], click.Context(main, info_name="coderun"))
runner = CliRunner()
for path in found:
    result = runner.invoke(main, [*path, "--help"])
    if result.exit_code != 0 or "Usage:" not in result.output:
        bad.append({"path": path, "code": result.exit_code, "output": result.output[-400:],
                    "error": repr(result.exception)})
print(json.dumps({"found": found, "bad": bad}))
"""

POLICY = """
[[rule]]
action = "allow"
host = "api.example.test"

[[rule]]
action = "allow"          # evil may be looked up ...
host = "evil.example.test"
proto = "dns"

[[rule]]
action = "deny"           # ... but not connected to
host = "evil.example.test"
"""

# Exit 0 only if the allowed fetch worked and the denied connection was refused.
SCRIPT = (
    "curl -sS -m 10 http://api.example.test/hello"
    " && ! curl -sS -m 10 -o /dev/null http://evil.example.test/"
)


def site_packages(installed: Installed) -> Path:
    out = installed.python("import sysconfig; print(sysconfig.get_paths()['purelib'])")
    return Path(out.stdout.strip())


def test_the_package_and_its_data_come_from_the_venv(installed: Installed) -> None:
    site = site_packages(installed)
    assert site.is_relative_to(installed.venv)
    out = installed.python(
        "import sandbox, snitch, tui\n"
        "from sandbox.data import images_dir, examples_dir\n"
        "from sandbox import images\n"
        "print(sandbox.__file__, snitch.__file__, tui.__file__)\n"
        "print(*(images_dir() / n / 'Dockerfile' for n in images.ALL_NAMES))\n"
        "print(examples_dir() / 'install.sh', examples_dir() / 'demo-policy.toml')\n"
        "from sandbox import pm; print(*(pm.shipped_policy(t) for t in pm.TOOLS))\n"
        "import importlib.resources as r; print(r.files('tui') / 'dashboard.tcss')\n"
    ).stdout.split()
    for name in out:
        path = Path(name)
        assert path.is_file() and not path.is_symlink(), path
        assert path.resolve().is_relative_to(site), path
        assert not path.resolve().is_relative_to(ROOT), path
    assert not list(site.glob("sandbox/data/images/*/wheels"))  # never in the package
    # every input of every image is in the wheel: the registry fixture's nested files too
    tags = installed.python(
        "from sandbox import images; print(*(images.image_tag(n, 'b') for n in images.ALL_NAMES))"
    ).stdout.split()
    assert tags == [images.image_tag(n, "b") for n in images.ALL_NAMES]

    version = installed.coderun("--version").stdout
    assert version.startswith("coderun 0.1.0\n"), version
    assert f"package:  {site}" in version and f"gateway:  {site / 'snitch'}" in version
    assert f"data dir: {installed.env['CODERUN_HOME']}" in version
    assert str(ROOT) not in version


def test_every_command_has_help_from_the_installed_wheel(installed: Installed) -> None:
    report = json.loads(installed.python(WALK).stdout)
    assert not report["bad"], report["bad"]
    found = {" ".join(path) for path in report["found"]}
    expected = {"", "run", "images", "images build", "rules", "rules list", "rules export",
                "rules from-session", "log", "export", "sessions", "gc", "pool", "pool start",
                "dashboard", "demo", "doctor"}  # fmt: skip
    assert expected <= found, expected - found
    # The two failures, as real processes: a lazily loaded group, and a subcommand.
    assert "Usage: coderun rules" in installed.coderun("rules", "--help").stdout
    assert "--verbose" in installed.coderun("images", "build", "--help").stdout


def test_shell_completion_works_from_the_wheel(installed: Installed) -> None:
    script = installed.coderun("--help", check=False)  # the program itself starts
    assert script.returncode == 0
    env = {**installed.env, "_CODERUN_COMPLETE": "bash_source"}
    source = installed.python(
        "import os, subprocess, sys\n"
        f"sys.exit(subprocess.run([{str(installed.venv / 'bin' / 'coderun')!r}], "
        f"env={env!r}).returncode)"
    ).stdout
    assert "_coderun_completion" in source and "complete " in source
    words = {**installed.env, "_CODERUN_COMPLETE": "bash_complete",
             "COMP_WORDS": "coderun ru", "COMP_CWORD": "1"}  # fmt: skip
    out = installed.python(
        "import subprocess, sys\n"
        f"sys.exit(subprocess.run([{str(installed.venv / 'bin' / 'coderun')!r}], "
        f"env={words!r}).returncode)"
    ).stdout
    offered = {line.split(",", 1)[1] for line in out.splitlines() if "," in line}
    assert {"run", "rules"} <= offered, out


@pytest.mark.docker
def test_doctor_and_a_real_run_from_the_installed_wheel(
    installed: Installed, client: docker.DockerClient, tmp_path: Path
) -> None:
    installed.coderun("gc")  # what interrupted runs left would fail doctor's "leftovers"
    built = installed.coderun("images", "build", timeout=1200)
    tags = dict(line.split() for line in built.stdout.splitlines())
    assert set(tags) == {"gateway", "internet", "sandbox-bash", "sandbox-python"}, built.stdout
    doctor = installed.coderun("doctor", check=False, timeout=120)
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    assert "ready: coderun can run here" in doctor.stdout

    policy = tmp_path / "policy.toml"
    policy.write_text(POLICY)
    internet = start_internet(client, tags["internet"])
    try:
        run = installed.coderun(
            "run", "--mode", "enforce", "--policy", str(policy), "--image", "bash",
            "--egress-network", internet.network_name, "--dns-upstream", internet.ip,
            "--", "sh", "-c", SCRIPT, check=False, timeout=300,
        )  # fmt: skip
    finally:
        internet.stop()
    assert run.returncode == 0, run.stdout + run.stderr
    assert "hello from api.example.test /hello" in run.stdout

    entries = [json.loads(line) for line in installed.coderun("log", "--json").stdout.splitlines()]
    flows = [e for e in entries if e["kind"] == "flow" and e.get("dport") == 80]
    allowed = [f for f in flows if f["verdict"] == "allow"]
    denied = [f for f in flows if f["verdict"] == "deny"]
    assert allowed and "api.example.test" in allowed[0]["names"], flows
    assert allowed[0]["dst"] == internet.ip
    assert denied and "evil.example.test" in denied[0]["names"], flows
    assert denied[0]["dst"] == internet.hosts["evil.example.test"]
    assert denied[0]["rule"] == "deny evil.example.test/any"
    home = Path(installed.env["CODERUN_HOME"])
    assert (home / "sessions").is_dir() and not (ROOT / "sessions").exists()


@pytest.mark.docker
def test_the_demo_runs_from_the_installed_wheel(
    installed: Installed, client: docker.DockerClient
) -> None:
    """Without a terminal: enforce mode with the demo policy the wheel carries."""
    installed.coderun("images", "build", timeout=1200)
    demo = installed.coderun("demo", check=False, timeout=300)
    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert "hello from api.example.test /v1/latest" in demo.stdout
    assert "[deny evil.example.test/any]" in demo.stdout  # the packaged demo-policy.toml
    assert (Path(installed.env["CODERUN_HOME"]) / "demo" / "sessions").is_dir()
