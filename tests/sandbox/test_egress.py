"""sandbox/egress.py: the egress network routed runs share, and its gateway rules."""

from __future__ import annotations

from typing import Any

import pytest

from sandbox.config import SessionError
from sandbox.egress import NAME, remove_shared, shared_egress, shared_networks
from snitch.gateway.netfilter import Interfaces, ruleset
from tests.hostfakes import FakeDockerNetworks


def test_made_on_first_use_then_reused() -> None:
    client: Any = FakeDockerNetworks()
    first = shared_egress(client)
    assert first.name == NAME and first.attrs["Labels"]["coderun.shared"] == "egress"
    assert "coderun.session" not in first.attrs["Labels"]  # no session's clean-up takes it
    assert shared_egress(client) is first and client.networks.created == 1


def test_a_run_racing_to_make_it_uses_the_winners() -> None:
    client: Any = FakeDockerNetworks()
    client.networks.race = True  # another run makes it between our get and create
    network = shared_egress(client)
    assert network is client.networks.by_name[NAME] and client.networks.created == 0


def test_a_network_of_that_name_not_made_by_coderun_is_refused() -> None:
    client: Any = FakeDockerNetworks()
    client.networks.create(NAME, labels={"someone": "else"})
    with pytest.raises(SessionError, match="not coderun's"):
        shared_egress(client)


def test_gc_all_removes_it_unless_a_gateway_is_on_it() -> None:
    client: Any = FakeDockerNetworks()
    shared_egress(client)
    client.networks.in_use.add(NAME)
    assert remove_shared(client) == [] and shared_networks(client)
    client.networks.in_use.clear()
    assert remove_shared(client) == [f"network {NAME}"] and not shared_networks(client)


def test_from_the_egress_network_only_the_gateways_own_connections_come_in() -> None:
    lines = ruleset(Interfaces("eth1", "172.30.0.2", 24, "eth0"), (80, 443), 8080).splitlines()
    egress_in = [line for line in lines if line.startswith("-A INPUT -i eth0")]
    assert egress_in == [
        "-A INPUT -i eth0 -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT",
        "-A INPUT -i eth0 -j DROP",
    ]
    # No INPUT rule without an interface accepts anything before them.
    first = lines.index(egress_in[0])
    assert not [x for x in lines[:first] if x.startswith("-A INPUT") and " -i " not in x]
