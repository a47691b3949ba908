"""The typed settings model: from ``coderun run``'s options to the gateway, in one piece.

CLI -> ``RunSettings``/``NetworkShape`` (click checks at the edge) -> the session's
``GatewaySettings`` -> its environment (one JSON document) -> the gateway, and the same
run settings through a warm gateway's claim. No Docker: the run stops where it would
start containers, the gateway is built but not run.

The one-place rule: every option of the settings model reaches the gateway without
being named anywhere else; ``test_every_option_field_reaches_the_gateway`` walks the
fields, so an option added to ``RunSettings`` is covered without touching this test.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from sandbox import paths
from sandbox.cli import main as cli_main
from sandbox.config import SessionConfig
from sandbox.session import Session
from snitch.core.loglimit import LogLimits
from snitch.core.model import Action, Mode
from snitch.core.settings import (
    SETTINGS_ENV,
    GatewaySettings,
    NetworkShape,
    PrivateAnswers,
    RunSettings,
    SettingsError,
    from_dict,
    from_json,
    option_of,
    to_json,
)
from snitch.gateway.main import Gateway


class Stop(Exception):
    """Raised where the run would start its session."""


@pytest.fixture()
def captured(home: Path, monkeypatch: pytest.MonkeyPatch) -> list[SessionConfig]:
    """``coderun run`` up to the session: the config it would start (no Docker)."""
    from sandbox import gateway_pyc, images, runner
    from sandbox.cli import run as run_cli

    configs: list[SessionConfig] = []

    def run_session(client: object, config: SessionConfig, *_: object, **__: object) -> int:
        configs.append(config)
        raise Stop

    monkeypatch.setattr(run_cli, "docker_client", lambda: object())
    built = {"gateway": "gw:t", "sandbox-bash": "sb"}
    monkeypatch.setattr(images, "build", lambda client, names=(): built)
    monkeypatch.setattr(gateway_pyc, "prepare", lambda client, image: None)
    monkeypatch.setattr(images, "resolve_runtime", lambda client, image, tags: f"{image}:t")
    monkeypatch.setattr(runner, "run_session", run_session)
    return configs


def invoke(*args: str, env: dict[str, str] | None = None) -> Any:
    return CliRunner().invoke(cli_main, ["run", *args], env=env)


# -- the gateway's side, without Docker ------------------------------------------------------
@dataclass
class FakeNetwork:
    id: str
    name: str
    attrs: dict[str, Any] = field(default_factory=dict)

    def reload(self) -> None:
        pass


class FakeClient:
    def __init__(self, *nets: FakeNetwork) -> None:
        self.networks = self
        self.nets = list(nets)

    def list(self) -> list[FakeNetwork]:
        return self.nets


EGRESS = FakeNetwork("e1", "egress", {"IPAM": {"Config": [
    {"Subnet": "172.29.0.0/16", "Gateway": "172.29.0.1"}]}})  # fmt: skip


def gateway_from(config: SessionConfig, tmp_path: Path, standby: bool = False) -> Gateway:
    """The session's settings for its gateway, through the container's environment."""
    session = Session(FakeClient(EGRESS), config, record=False)  # type: ignore[arg-type]
    env = session.gateway_settings(EGRESS, standby).to_env()  # type: ignore[arg-type]
    assert list(env) == [SETTINGS_ENV]  # one variable, one document
    settings = GatewaySettings.from_env(json.loads(json.dumps(env)))
    paths.api_token()
    # The gateway's data mount is the host's data dir (the session's folder, the token).
    return Gateway(dataclasses.replace(settings, data=str(paths.data_dir())))


# -- tests -----------------------------------------------------------------------------------
def test_run_options_reach_the_gateway(captured: list[SessionConfig], tmp_path: Path) -> None:
    policy = tmp_path / "p.toml"
    policy.write_text('[[rule]]\naction = "allow"\nhost = "api.example.test"\nport = 443\n')
    result = invoke(
        "--mode", "ask", "--policy", str(policy), "--profile", "ci", "--ask-timeout", "7.5",
        "--ask-default", "allow", "--max-pending", "9", "--private-answers", "allow",
        "--web-ports", "8080, 443", "--intercept-tls", "--dns-upstream", "192.0.2.53",
        "--egress-network", "outside", "--prompt", "none", "--", "sh", "-c", "exit 3",
        env={"CODERUN_LOG_RATE": "7"},
    )  # fmt: skip
    assert isinstance(result.exception, Stop), result.output
    (config,) = captured
    assert config.network == NetworkShape(
        gateway_image="gw:t", egress_network="outside", dns_upstream="192.0.2.53",
        web_ports=(8080, 443), intercept_tls=True,
    )  # fmt: skip
    gw = gateway_from(config, tmp_path)
    assert gw.mode is Mode.ASK and gw.asker is not None
    assert (gw.asker.timeout, gw.asker.default, gw.asker.max_pending) == (7.5, Action.ALLOW, 9)
    assert gw.private is PrivateAnswers.ALLOW
    assert gw.command == ["sh", "-c", "exit 3"] and gw.image == "bash"
    assert gw.rules.profile == "ci"
    assert any(r.host == "api.example.test" for r in gw.rules._extra)  # the policy's copy
    assert (gw.web_ports, gw.intercept, gw.upstream) == ((8080, 443), True, "192.0.2.53")
    assert gw.writer.limiter.limits.rate == 7.0
    assert gw.egress_subnet == "172.29.0.0/16" and gw.egress_gateway == "172.29.0.1"


def test_a_warm_gateway_gets_the_run_from_its_claim(
    captured: list[SessionConfig], tmp_path: Path
) -> None:
    assert isinstance(invoke("--ask-timeout", "3", "--mode", "ask", "--prompt", "none",
                             "--", "true").exception, Stop)  # fmt: skip
    (config,) = captured
    gw = gateway_from(config, tmp_path, standby=True)
    assert gw.standby and gw.mode is Mode.ENFORCE and gw.asker is None  # nothing yet
    session = Session(None, config, record=False)  # type: ignore[arg-type]
    claim = to_json(session.run_settings())  # what claim.json holds
    gw.configure(from_json(RunSettings, claim))
    assert gw.mode is Mode.ASK and gw.asker is not None and gw.asker.timeout == 3.0


def test_a_typo_is_a_usage_error_on_the_host(captured: list[SessionConfig]) -> None:
    for args, where in (
        (["--web-ports", "80,44x"], "--web-ports"),
        (["--web-ports", "70000"], "--web-ports"),
        (["--max-pending", "0"], "--max-pending"),
        (["--ask-timeout", "0"], "--ask-timeout"),
        (["--ask-default", "maybe"], "--ask-default"),
        (["--private-answers", "sometimes"], "--private-answers"),
        (["--dns-upstream", "resolver.test"], "resolver.test"),
    ):
        result = invoke(*args, "--", "true")
        assert result.exit_code == 2 and where in result.output, (args, result.output)
    bad_env = invoke("--", "true", env={"CODERUN_LOG_BURST": "0"})
    assert bad_env.exit_code == 1 and "CODERUN_LOG_" in bad_env.output
    assert captured == []  # nothing started


def _other_value(tp: Any, default: Any) -> Any:
    """A value of the field's type that is not its default (for the walk below)."""
    if isinstance(default, bool):
        return not default
    if isinstance(default, enum.Enum):
        return next(m for m in type(default) if m is not default)
    if isinstance(default, tuple):
        return (8443,)
    if isinstance(default, int | float):
        return type(default)(default + 1)
    return "192.0.2.1" if "dns" in str(tp) else "value-of-test"


def _cli_text(value: Any) -> list[str]:
    if isinstance(value, tuple):
        return [",".join(map(str, value))]
    return [] if isinstance(value, bool) else [str(value)]


def test_every_option_field_reaches_the_gateway(
    captured: list[SessionConfig], tmp_path: Path
) -> None:
    """Each field with ``option(...)`` is a `coderun run` option and arrives in the
    gateway's settings (and in the claim) without any other code naming it."""
    fields = [(cls, f) for cls in (NetworkShape, RunSettings) for f in dataclasses.fields(cls)
              if option_of(f) is not None]  # fmt: skip
    assert len(fields) >= 9
    for cls, f in fields:
        opt = option_of(f)
        assert opt is not None
        value = _other_value(f.type, f.default)
        if f.name == "dns_upstream":
            value = "192.0.2.1"
        captured.clear()
        result = invoke(opt.flag, *_cli_text(value), "--", "true")
        assert isinstance(result.exception, Stop), (f.name, result.output)
        config = captured[0]
        session = Session(FakeClient(EGRESS), config, record=False)  # type: ignore[arg-type]
        env = session.gateway_settings(EGRESS, standby=False).to_env()  # type: ignore[arg-type]
        settings = GatewaySettings.from_env(env)
        part = settings.network if cls is NetworkShape else settings.run
        assert getattr(part, f.name) == value, f.name
        if cls is RunSettings:
            claim = from_json(RunSettings, to_json(session.run_settings()))
            assert getattr(claim, f.name) == value, f.name


def test_documents_are_checked_when_read() -> None:
    run = RunSettings(command=("a",), mode=Mode.AUDIT, log_limits=LogLimits(None, 3.0, 4))
    assert from_json(RunSettings, to_json(run)) == run
    for bad in ({"mode": "loud"}, {"max_pending": "5"}, {"max_pending": 0}, {"command": "ls"},
                {"ask_timeout": True}, {"ask_timeout": 0}, {"typo": 1},
                {"log_limits": {"burst": 0}}):  # fmt: skip
        with pytest.raises(SettingsError):
            from_dict(RunSettings, bad)
    with pytest.raises(SettingsError):
        from_dict(NetworkShape, {"web_ports": [80, 0]})
    with pytest.raises(SettingsError):
        GatewaySettings.from_env({})
    with pytest.raises(SettingsError):
        GatewaySettings.from_env({SETTINGS_ENV: json.dumps({"session": "s"})})  # no subnet
    assert os.environ.get(SETTINGS_ENV) is None


def test_every_option_field_is_a_profile_key_checked_by_its_type() -> None:
    """A profile (sandbox/profiles.py) sets the same options by field name, checked by the
    field's type and range: nothing to add there for a new option either."""
    from sandbox.profile_keys import TOP_KEYS

    for cls in (NetworkShape, RunSettings):
        for f in dataclasses.fields(cls):
            if option_of(f) is not None and f.name != "profile":
                assert TOP_KEYS[f.name][0] == f.name
    check = {k: c for k, (_, c) in TOP_KEYS.items()}
    assert check["max_pending"](9) == 9 and check["intercept_tls"](True) is True
    for key, bad in (("max_pending", 0), ("max_pending", "9"), ("ask_timeout", 0.0),
                     ("intercept_tls", "yes"), ("ask_default", "maybe"),
                     ("private_answers", "ALLOW")):  # fmt: skip
        with pytest.raises(ValueError):
            check[key](bad)
