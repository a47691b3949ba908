"""[[secret]] tables of policy files: parsed, checked, used by runs, never imported."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from snitch.core.policyfile import PolicyError, loads_policy
from snitch.core.policysecrets import PolicySecret

GOOD = """
[[rule]]
action = "allow"
host = "api.example.test"

[[secret]]
name = "TOKEN"
hosts = ["api.example.test", "*.cdn.example.test"]

[[secret]]
name = "NPM_TOKEN"
file = "~/npm-token"
"""


def test_secrets_are_read_beside_the_rules() -> None:
    policy = loads_policy(GOOD, "p.toml")
    assert [r.host for r in policy.rules] == ["api.example.test"]
    assert policy.secrets == [
        PolicySecret("TOKEN", ("api.example.test", "*.cdn.example.test")),
        PolicySecret("NPM_TOKEN", (), "~/npm-token"),
    ]
    assert policy.secrets[0].secret_spec() == "TOKEN"
    assert policy.secrets[0].host_spec() == "TOKEN=api.example.test,*.cdn.example.test"
    assert policy.secrets[1].secret_spec() == "NPM_TOKEN=@~/npm-token"
    assert policy.secrets[1].host_spec() is None


@pytest.mark.parametrize(
    ("table", "where", "message"),
    [
        ('name = "T"\nvalue = "hunter2"', "3:1", "value never goes in a policy file"),
        ('name = "bad name"', "2:1", "name must be a variable name"),
        ('name = "T"\nhosts = "a.test"', "3:1", "hosts must be a list"),
        ('name = "T"\ncolour = 1', "3:1", "unknown key 'colour'"),
        ('name = "T"\nfile = ""', "3:1", "file must be a path"),
    ],
)
def test_bad_secret_tables_say_where(table: str, where: str, message: str) -> None:
    with pytest.raises(PolicyError) as e:
        loads_policy(f"[[secret]]\n{table}\n", "p.toml")
    assert str(e.value).startswith(f"p.toml:{where}: secret 1: "), str(e.value)
    assert message in str(e.value)


def test_a_run_takes_the_policy_secrets_and_import_leaves_them_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sandbox.cli import run as run_mod

    policy = tmp_path / "p.toml"
    policy.write_text(GOOD)
    (tmp_path / "tok").write_text("from-file\n")
    policy.write_text(GOOD.replace("~/npm-token", "tok"))
    seen: dict[str, object] = {}

    def parse(secret: tuple[str, ...], hosts: tuple[str, ...], env: object) -> object:
        seen["secret"], seen["hosts"] = secret, hosts
        raise run_mod.click.UsageError("stop here")  # before Docker

    monkeypatch.setattr("sandbox.secrets.parse_secrets", parse)
    from sandbox.cli import main as cli

    result = CliRunner().invoke(cli, ["run", "--policy", str(policy), "--", "true"])
    assert "stop here" in result.output, result.output
    assert seen["secret"] == ("TOKEN", f"NPM_TOKEN=@{tmp_path / 'tok'}")
    assert seen["hosts"] == ("TOKEN=api.example.test,*.cdn.example.test",)
    both = CliRunner().invoke(cli, ["run", "--policy", str(policy), "--secret", "TOKEN", "--",
                                    "true"])  # fmt: skip
    assert both.exit_code == 2 and "named by --secret and by" in both.output


@pytest.mark.usefixtures("home")
def test_rules_import_leaves_secrets_out(tmp_path: Path) -> None:
    from sandbox.cli.rules import rules
    from sandbox.paths import rules_db
    from snitch.core.store import RuleStore

    policy = tmp_path / "p.toml"
    policy.write_text(GOOD)
    result = CliRunner().invoke(rules, ["import", str(policy)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "left out 2 [[secret]] tables" in result.output
    with RuleStore(rules_db()) as store:
        assert [r.host for r in store.list()] == ["api.example.test"]
