"""Issue 12, item 9: how the run's settings reach the rebinding guard.

``--private-answers`` becomes ``RunSettings.private_answers`` (a run setting: a warm
gateway gets it with its claim), the host's networks ``GatewaySettings.host_networks``
(the session lists every Docker network; a named egress network's members are the
outside).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from sandbox.host_networks import host_networks
from snitch.core.settings import (
    GatewaySettings,
    NetworkShape,
    PrivateAnswers,
    RunSettings,
    SettingsError,
    from_dict,
    from_json,
    to_json,
)
from snitch.gateway.main import Gateway


@dataclass
class FakeNetwork:
    id: str
    attrs: dict[str, Any] = field(default_factory=dict)


class FakeNetworks:
    def __init__(self, nets: list[FakeNetwork]) -> None:
        self.nets = nets

    def list(self) -> list[FakeNetwork]:
        return self.nets


class FakeClient:
    def __init__(self, nets: list[FakeNetwork]) -> None:
        self.networks = FakeNetworks(nets)


def net(ident: str, *configs: dict[str, str]) -> FakeNetwork:
    return FakeNetwork(ident, {"IPAM": {"Config": list(configs)}})


NETS = [
    net("none"),
    net("bridge", {"Subnet": "172.17.0.0/16"}),  # docker0: no Gateway in its IPAM config
    net("egress", {"Subnet": "172.29.0.0/16", "Gateway": "172.29.0.1"}),
    net("other", {"Subnet": "192.168.80.0/20", "Gateway": "192.168.80.1"},
        {"Subnet": "fd12:3456::/64", "Gateway": "fd12:3456::1"}),
]  # fmt: skip


def test_a_named_egress_network_is_the_outside_but_its_gateway_is_the_host() -> None:
    egress = NETS[2]
    found = host_networks(FakeClient(NETS), egress, named=True)  # type: ignore[arg-type]
    assert found == sorted(
        ["172.17.0.0/16", "172.17.0.1", "172.29.0.1", "192.168.80.0/20", "192.168.80.1",
         "fd12:3456::/64", "fd12:3456::1"]
    )  # fmt: skip


def test_an_egress_network_coderun_made_is_the_host_s() -> None:
    egress = NETS[2]
    found = host_networks(FakeClient(NETS), egress, named=False)  # type: ignore[arg-type]
    assert "172.29.0.0/16" in found


@pytest.fixture()
def gateway(tmp_path: Path) -> Gateway:
    (tmp_path / "api-token").write_text("t" * 32)
    settings = GatewaySettings(
        session="s1", data=str(tmp_path), network=NetworkShape(dns_upstream="127.0.0.1"),
        egress_subnet="172.29.0.0/16", egress_gateway="172.29.0.1",
        host_networks=("172.17.0.0/16", "172.17.0.1", "192.168.80.0/20"), run=RunSettings(),
    )  # fmt: skip
    return Gateway(settings)


def test_the_gateway_guards_the_host_and_the_private_ranges_by_default(gateway: Gateway) -> None:
    assert gateway.gate.guard is gateway.dns.guard is gateway.guard
    why = gateway.guard.protected.why
    assert why("172.29.0.1") == "the host or a network it hosts"  # the egress gateway
    assert why("172.17.0.1") == "the host or a network it hosts"
    assert why("192.168.80.9") == "the host or a network it hosts"
    assert why("172.29.0.5") is None  # the named egress network: the outside
    assert why("10.1.2.3") == "private"


def test_private_answers_allow_is_a_run_setting(gateway: Gateway) -> None:
    gateway.configure(RunSettings(private_answers=PrivateAnswers.ALLOW))  # a claim
    why = gateway.guard.protected.why
    assert gateway.guard.protected.private is PrivateAnswers.ALLOW
    assert why("10.1.2.3") is None
    assert why("172.17.0.1") == "the host or a network it hosts"
    with pytest.raises(SettingsError):
        from_dict(RunSettings, {"private_answers": "maybe"})


def test_the_run_option_reaches_the_gateway_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from click.testing import CliRunner

    from sandbox.cli.run import run
    from sandbox.config import SessionConfig
    from sandbox.session import Session

    result = CliRunner().invoke(run, ["--private-answers", "sometimes", "--", "true"])
    assert result.exit_code == 2 and "--private-answers" in result.output
    monkeypatch.setenv("CODERUN_HOME", str(tmp_path))
    for value in PrivateAnswers:
        run_settings = RunSettings(command=("true",), private_answers=value)
        config = SessionConfig(image="i", network=NetworkShape(gateway_image="g"),
                               run=run_settings)  # fmt: skip
        session = Session(None, config, record=False)  # type: ignore[arg-type]
        claim = from_json(RunSettings, to_json(session.run_settings()))  # claim or env
        assert claim.private_answers is value
    assert RunSettings().private_answers is PrivateAnswers.DENY
