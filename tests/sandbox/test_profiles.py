"""Executable profiles: parsing, file:line:col errors, rules saved back, the CLI."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from sandbox.cli import main
from sandbox.config import SessionConfig
from sandbox.profiles import (
    SHEBANG,
    append_rules,
    load_profile,
    loads_profile,
    new_profile,
)
from sandbox.session import run_policy
from snitch.core.model import Action, Proto, Rule
from snitch.core.policyfile import PolicyError, loads_policy
from snitch.core.settings import NetworkShape

GOOD = f"""{SHEBANG}
name = "tool"
description = "a tool"
image = "python"
command = ["python3", "-m", "tool"]
workdir = "/work"
mounts = [".:/work", "/etc/hostname:/h:ro"]
env = {{ A = "1", B = "two" }}
mode = "enforce"
ask_timeout = 12.5
egress_network = "net"

[limits]
cpus = 1.5
memory = "512m"
pids = 64
user = "1000:1000"

[[rule]]
action = "allow"
host = "api.example.test"
port = 80
proto = "tcp"
"""


def test_a_profile_names_the_whole_run(tmp_path: Path) -> None:
    profile = loads_profile(GOOD, tmp_path / "x.toml")
    assert profile.name == "tool"
    assert profile.description == "a tool"
    opts = profile.run_options(["--flag", "arg"], cwd=tmp_path)
    assert opts["command"] == ["python3", "-m", "tool", "--flag", "arg"]
    assert opts["image"] == "python" and opts["workdir"] == "/work"
    assert opts["volumes"] == [f"{tmp_path}:/work", "/etc/hostname:/h:ro"]
    assert opts["env"] == ("A=1", "B=two")
    assert (opts["mode"], opts["ask_timeout"], opts["egress_network"]) == ("enforce", 12.5, "net")
    limits = (opts["cpus"], opts["memory"], opts["pids"], opts["user"])
    assert limits == (1.5, "512m", 64, "1000:1000")
    assert opts["profile"] == "tool"
    [rule] = profile.rules
    assert (rule.action, rule.host, rule.port_lo) == ("allow", "api.example.test", 80)
    assert rule.proto == "tcp"


def test_the_name_defaults_to_the_file_name(tmp_path: Path) -> None:
    profile = loads_profile('command = ["true"]\n', tmp_path / "terraform.toml")
    assert profile.name == "terraform"
    assert loads_profile('command = ["true"]\n', tmp_path / "terraform").name == "terraform"


@pytest.mark.parametrize(
    ("text", "where", "message"),
    [
        ('command = ["x"]\nmode = "bogus"\n', "2:1", "mode: 'bogus' is not one of"),
        ('command = ["x"]\n\nimage = 3\n', "3:1", "image: must be a string"),
        ('command = "npm test"\n', "1:1", "command: must be a non-empty list"),
        ('command = ["x"]\nworkdir = "work"\n', "2:1", "must be an absolute path"),
        ('command = ["x"]\nmounts = ["/a"]\n', "2:1", "want HOST:CONTAINER"),
        ('command = ["x"]\nenv = { "A B" = "1" }\n', "2:1", "names are"),
        ('command = ["x"]\ncolour = "red"\n', "2:1", "unknown key 'colour'"),
        ('command = ["x"]\npublish = ["80"]\n', "2:1", "publish: '80': want"),
        ('command = ["x"]\ntty = "yes"\n', "2:1", "tty: must be true or false"),
        ('command = ["x"]\n[limits]\n  memory = "lots"\n', "3:3", "limits.memory"),
        ('command = ["x"]\n[limits]\npids = 3\n', "3:1", "limits.pids: must be >= 16"),
        ('command = ["x"]\n[limits]\nuser = "bob"\n', "3:1", "UID"),
        ('command = ["x"]\n[limits]\ndisk = 1\n', "3:1", "unknown key limits.'disk'"),
        ('command = ["x"]\n[[rule]]\naction = "allow"\nhost = "a..b"\n', "4:1", "rule 1: bad host"),
        ('command = ["x"]\n[[rule]]\nhost = "a.test"\n', "2:1", "rule has no action"),
        ('command = ["x"\n', "1:15", "Unclosed array"),
        ('image = "bash"\n', "1:1", "no command"),
        ('name = "no spaces"\ncommand = ["x"]\n', "1:1", "name:"),
    ],
)
def test_a_malformed_profile_is_refused_at_its_line_and_column(
    tmp_path: Path, text: str, where: str, message: str
) -> None:
    with pytest.raises(PolicyError) as err:
        loads_profile(text, tmp_path / "p.toml")
    assert str(err.value).startswith(f"{tmp_path / 'p.toml'}:{where}: "), str(err.value)
    assert message in str(err.value)


def test_the_starter_profile_loads_and_runs_its_command(tmp_path: Path) -> None:
    text = new_profile("node", ["npm", "test"], name="unit", workdir="/work", mode="enforce")
    assert text.startswith(SHEBANG + "\n")
    profile = loads_profile(text, tmp_path / "unit.toml")
    assert profile.command == ["npm", "test"]
    assert profile.options["image"] == "node"
    assert profile.run_options([], cwd=tmp_path)["volumes"] == [f"{tmp_path}:/work"]


def test_saved_rules_are_appended_once_and_the_file_still_loads(tmp_path: Path) -> None:
    path = tmp_path / "p.toml"
    path.write_text(GOOD)
    path.chmod(0o755)
    profile = load_profile(path)
    same = Rule(Action.ALLOW, host="api.example.test", port_lo=80, port_hi=80, proto=Proto.TCP)
    new = Rule(Action.DENY, host="evil.example.test", proto=Proto.ANY, source="prompt")
    bound = Rule(Action.ALLOW, host="s.example.test", session="abc")
    timed = Rule(Action.ALLOW, host="t.example.test", expires_at=1e12)
    added = append_rules(profile, [same, new, bound, timed, new])
    assert added == [new]
    again = load_profile(path)
    assert [(r.action, r.host) for r in again.rules] == [
        ("allow", "api.example.test"), ("deny", "evil.example.test")]  # fmt: skip
    assert path.read_text().startswith(GOOD)  # comments, shebang and order kept
    assert stat.S_IMODE(path.stat().st_mode) == 0o755
    assert append_rules(again, [new]) == []


def test_the_gateway_gets_the_profile_rules_with_the_policy_file(tmp_path: Path) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text('blocklist = ["ads.example.test"]\n[[rule]]\naction = "deny"\nport = 25\n')
    text = '[[rule]]\naction = "allow"\nhost = "api.example.test"\n'
    config = SessionConfig(image="i", network=NetworkShape(gateway_image="g"),
                           policy_file=policy, policy_text=text)  # fmt: skip
    out = run_policy(config)
    assert out is not None
    loaded = loads_policy(out.decode())
    assert [(r.action, r.host, r.port_lo) for r in loaded.rules] == [
        ("deny", None, 25), ("allow", "api.example.test", 0)]  # fmt: skip
    assert loaded.blocklist == ["ads.example.test"]
    assert run_policy(SessionConfig(image="i", network=NetworkShape(gateway_image="g"))) is None


@pytest.fixture()
def cli_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CODERUN_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_profiles_new_check_install_list_show(cli_home: Path) -> None:
    runner = CliRunner()
    out = runner.invoke(main, ["profiles", "new", "tests", "--image", "node", "--", "npm", "test"])
    assert out.exit_code == 0, out.output
    path = cli_home / "tests.toml"
    assert os.access(path, os.X_OK)
    assert runner.invoke(main, ["profiles", "check", str(path)]).exit_code == 0
    out = runner.invoke(main, ["profiles", "install", str(path)])
    assert out.exit_code == 0, out.output
    installed = cli_home / "home" / "bin" / "tests"
    assert installed.read_text().startswith(SHEBANG) and os.access(installed, os.X_OK)
    out = runner.invoke(main, ["profiles", "list"])
    assert "tests" in out.output and "npm test" in out.output
    out = runner.invoke(main, ["profiles", "show", "tests"])
    assert out.exit_code == 0 and "node" in out.output, out.output
    assert runner.invoke(main, ["profiles", "install", str(path)]).exit_code == 1  # exists


def test_profiles_check_reports_file_line_col(cli_home: Path) -> None:
    bad = cli_home / "bad.toml"
    bad.write_text('command = ["x"]\n[limits]\nmemory = "lots"\n')
    out = CliRunner().invoke(main, ["profiles", "check", str(bad)])
    assert out.exit_code == 2
    assert f"{bad}:3:1: limits.memory" in out.output


def test_exec_refuses_a_malformed_profile_before_docker(
    cli_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_docker() -> None:
        raise AssertionError("a malformed profile reached Docker")

    monkeypatch.setattr("sandbox.cli.run.docker_client", no_docker)
    bad = cli_home / "bad.toml"
    bad.write_text('command = ["x"]\n[[rule]]\naction = "maybe"\n')
    out = CliRunner().invoke(main, ["exec", str(bad), "arg"])
    assert out.exit_code == 2
    assert f"{bad}:3:1: rule 1: unknown action" in out.output
    missing = cli_home / "m.toml"
    missing.write_text('command = ["x"]\nmounts = ["./nowhere:/w"]\n')
    out = CliRunner().invoke(main, ["exec", str(missing)])
    assert out.exit_code == 2 and "does not exist" in out.output


def test_exec_hands_run_the_profile_with_its_args(
    cli_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: dict[str, object] = {}

    def build_config(**options: object) -> None:
        seen.update(options)
        raise SystemExit(7)

    monkeypatch.setattr("sandbox.cli.run.build_config", build_config)
    path = cli_home / "tool.toml"
    path.write_text(GOOD.replace('egress_network = "net"\n', ""))
    out = CliRunner().invoke(main, ["exec", "--mode", "audit", str(path), "a", "--b"])
    assert out.exit_code == 7, out.output
    assert seen["command"] == ("python3", "-m", "tool", "a", "--b")
    assert seen["volumes"] == (f"{cli_home}:/work", "/etc/hostname:/h:ro")
    assert (seen["mode"], seen["profile"], seen["image"]) == ("audit", "tool", "python")
    assert (seen["memory"], seen["tmpfs_size"], seen["egress_network"]) == ("512m", "1g", None)
    assert "api.example.test" in str(seen["policy_text"])
    assert (seen["tty"], seen["publish"]) == (False, ())


def test_a_profile_may_take_the_terminal_and_publish(tmp_path: Path) -> None:
    text = 'command = ["bash"]\ntty = true\ninteractive = true\npublish = ["0.0.0.0:8080:80"]\n'
    opts = loads_profile(text, tmp_path / "sh.toml").run_options()
    assert (opts["tty"], opts["interactive"], opts["publish"]) == (True, True, ("0.0.0.0:8080:80",))


def test_a_profile_names_secrets_their_hosts_and_shares(tmp_path: Path) -> None:
    text = ('command = ["bash"]\nsecrets = ["TOKEN", "KEY=@~/key"]\n'
            'secret_hosts = { TOKEN = ["api.example.test", "b.example.test"] }\n'
            'shares = ["data", "conf:/etc/app:rw"]\n'
            'secret_files = ["npmrc=r.example.test", "netrc:/home/u/.netrc=a.test,b.test"]'
            '\n')  # fmt: skip
    opts = loads_profile(text, tmp_path / "s.toml").run_options(cwd=tmp_path)
    assert opts["secret_file"] == (
        f"{tmp_path / 'npmrc'}=r.example.test",
        f"{tmp_path / 'netrc'}:/home/u/.netrc=a.test,b.test",
    )
    assert opts["secret"] == ("TOKEN", "KEY=@~/key")
    assert opts["secret_host"] == ("TOKEN=api.example.test,b.example.test",)
    assert opts["share"] == (str(tmp_path / "data"), f"{tmp_path / 'conf'}:/etc/app:rw")
    with pytest.raises(PolicyError):
        loads_profile('secret_hosts = { TOKEN = "a.test" }\n', tmp_path / "bad.toml")
