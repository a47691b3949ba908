"""Issue 12, items 9-11: an allowed name must not point inside.

The demo internet answers ``*.rb.example.test`` as a hostile name owner would: with
the host's bridge address on the egress network, loopback, cloud metadata, private,
CGNAT and synthetic-range addresses, the asking gateway's own address, a CNAME chain
that ends at the host, and a reply that carries ``api.example.test A <evil's address>``
beside its own answer. A listener on the host's bridge address proves what did not
arrive (positive control: a container on that network reaches it; a CIDR rule lets the
sandbox reach it too).
"""

from __future__ import annotations

import json
import random
import re
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import docker
import docker.errors
import pytest

from sandbox.cleanup import remove_session
from sandbox.internet import DemoInternet
from snitch.core.model import Action, DecisionRequest
from tests.e2e.conftest import Result, latest_log, wait_for
from tests.e2e.test_ask_mode import LiveRun
from tests.escape.helpers import HostListener, bridge_gateway, helper_labels, new_ident

pytestmark = pytest.mark.docker

PROBE = Path(__file__).with_name("rebind_probe.py")
INSIDE = {  # <label>.rb.example.test -> what its answer is (the log says why it is dropped)
    "host": "the host",
    "loopback": "loopback",
    "metadata": "link-local",
    "private": "private",
    "cgnat": "CGNAT",
    "bench": "the synthetic range",
    "gateway": "the gateway",
    "chain": "the host",
}
ALLOW_RB = """
[[rule]]
action = "allow"
host = "*.rb.example.test"
"""


@pytest.fixture()
def bridge(internet: DemoInternet) -> str:
    """The host's address on the egress network (the demo internet's default route)."""
    address = bridge_gateway(internet.network)
    assert f"BRIDGE {address}" in internet.logs()
    return address


@pytest.fixture()
def listener(bridge: str) -> Iterator[HostListener]:
    for _ in range(50):
        try:
            found = HostListener(bridge, random.randrange(20000, 60000))
        except OSError:
            continue
        yield found
        found.close()
        return
    raise AssertionError("no free port for the host listener")


def port_of(listener: HostListener) -> int:
    return int(listener.tcp.getsockname()[1])


def steps(result: Result) -> list[dict[str, Any]]:
    return [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]


def step(result: Result, name: str) -> dict[str, Any]:
    return next(s for s in steps(result) if s["step"] == name)


def policy(tmp_path: Path, text: str) -> str:
    path = tmp_path / "policy.toml"
    path.write_text(text)
    return str(path)


def reach_from_a_container(
    client: docker.DockerClient, tags: dict[str, str], internet: DemoInternet, address: str,
    port: int,
) -> None:  # fmt: skip
    """Positive control: a container on the egress network connects to the listener."""
    ident = new_ident("rebind-control")
    code = f"import socket; socket.create_connection(('{address}', {port}), timeout=5)"
    try:
        out = client.containers.run(
            tags["sandbox-bash"], ["python3", "-c", code], network=internet.network_name,
            labels=helper_labels(ident, "control"), remove=True,
        )  # fmt: skip
        assert out is not None
    finally:
        remove_session(client, ident)


def test_an_allowed_name_never_leads_to_the_host_or_inside(
    run_coderun: Callable[..., Result],
    internet: DemoInternet,
    tags: dict[str, str],
    client: docker.DockerClient,
    bridge: str,
    listener: HostListener,
    tmp_path: Path,
) -> None:
    port, nonce = port_of(listener), uuid.uuid4().hex[:8]
    mark = len(internet.logs())
    probes = [f"dns:{label}.rb.example.test:A:4660" for label in [*INSIDE, "mixed", "public"]]
    probes += [
        "resolve:host.rb.example.test",
        f"connect:host.rb.example.test:{port}",
        f"connect:chain.rb.example.test:{port}",
        f"connect:{bridge}:{port}",  # the address itself: no name vouches for it
        f"http:http://public.rb.example.test/rb-{nonce}",  # control: names do work
        # Three names: one name asked again is answered from the forwarder's cache.
        *[f"dns:CaSe-{nonce}-{n}.Rb.Example.TEST:A:4660" for n in range(3)],
        f"dns:any-{nonce}.rb.example.test:ANY:4660",
        f"dns:null-{nonce}.rb.example.test:NULL:4660",
    ]  # fmt: skip
    result = run_coderun("--policy", policy(tmp_path, ALLOW_RB), "-v", f"{PROBE}:/probe.py:ro",
                         "--", "python3", "/probe.py", *probes)  # fmt: skip
    assert result.status == 0, result.stderr
    # Every answer inside was dropped: an empty NOERROR, the log says rebind and why.
    for label, why in INSIDE.items():
        got = step(result, f"dns:{label}.rb.example.test:A:4660")
        assert got["ok"] and got["detail"]["rcode"] == 0, got
        assert [a for a in got["detail"]["answers"] if "." in a] == [], got
        lines = result.dns(qname=f"{label}.rb.example.test", qtype="A")
        assert lines and all(e.verdict == "rebind" and why in e.reason for e in lines), lines
    assert bridge in result.dns(qname="host.rb.example.test")[0].reason
    mixed = step(result, "dns:mixed.rb.example.test:A:4660")["detail"]
    assert mixed["answers"] == [internet.ip] and mixed["sections"] == [1, 0, 0]
    assert step(result, "dns:public.rb.example.test:A:4660")["detail"]["answers"] == [internet.ip]
    assert step(result, f"http:http://public.rb.example.test/rb-{nonce}")["ok"]
    # Nothing reached the host: not by name, not by the bare address.
    for name in ("resolve:host.rb.example.test", f"connect:host.rb.example.test:{port}",
                 f"connect:chain.rb.example.test:{port}", f"connect:{bridge}:{port}"):  # fmt: skip
        assert not step(result, name)["ok"], step(result, name)
    assert listener.hits == []
    assert [f.verdict for f in result.flows(dst=bridge)] == ["deny"]
    reach_from_a_container(client, tags, internet, bridge, port)
    wait_for(lambda: listener.hits, "the control's connection to the host listener")
    # The question upstream: lower case, a fresh id; other types never leave.
    upstream = internet.logs(mark)
    ids = [int(i) for i in re.findall(rf"DNS case-{nonce}-\d\.rb\.example\.test A id=(\d+)",
                                      upstream)]  # fmt: skip
    assert len(ids) == 3 and f"CaSe-{nonce}" not in upstream
    assert ids != [4660] * 3
    for kind in ("any", "null"):
        got = step(result, f"dns:{kind}-{nonce}.rb.example.test:{kind.upper()}:4660")
        assert got["ok"] and got["detail"]["rcode"] == 5, got  # REFUSED
        assert f"{kind}-{nonce}" not in upstream
        (line,) = result.dns(qname=f"{kind}-{nonce}.rb.example.test")
        assert line.verdict == "deny" and "is not on the list" in line.reason


def test_an_address_rule_reaches_the_host_by_name(
    run_coderun: Callable[..., Result],
    bridge: str,
    listener: HostListener,
    tmp_path: Path,
) -> None:
    """The control for the test above: with a CIDR rule for the host's port, the same
    name leads there and the listener sees the sandbox (through the gateway)."""
    port = port_of(listener)
    text = (
        ALLOW_RB
        + f"""
[[rule]]
action = "allow"
cidr = "{bridge}/32"
port = {port}
proto = "tcp"
"""
    )
    result = run_coderun("--policy", policy(tmp_path, text), "-v", f"{PROBE}:/probe.py:ro",
                         "--", "python3", "/probe.py", f"connect:host.rb.example.test:{port}",
                         f"connect:host.rb.example.test:{port + 1}")  # fmt: skip
    assert step(result, f"connect:host.rb.example.test:{port}")["ok"], result.stdout
    wait_for(lambda: listener.hits, "the sandbox's connection to the host listener")
    assert [f.verdict for f in result.flows(dst=bridge, dport=port)] == ["allow"]
    # Another port of the host: the name alone does not vouch for it.
    assert [f.verdict for f in result.flows(dst=bridge, dport=port + 1)] == ["rebind"]


def test_ask_mode_checks_the_real_address_before_the_flow_leaves(
    home: Path,
    internet: DemoInternet,
    bridge: str,
    listener: HostListener,
) -> None:
    port = port_of(listener)
    run = LiveRun(home, internet, "-v", f"{PROBE}:/rb.py:ro", "--", "python3", "/rb.py",
                  f"connect:host.rb.example.test:{port}")  # fmt: skip
    try:
        (item,) = run.wait_pending(1)
        assert item.names == ["host.rb.example.test"] and item.dport == port
        run.decide(DecisionRequest(Action.ALLOW, pending_id=item.id, lifetime="once"))
        status, results, err = run.finish()
    finally:
        run.kill()
    assert status == 0, err
    assert results and not results[0]["ok"], results
    assert listener.hits == []
    flows = [e for e in latest_log(home) if e.kind == "flow" and e.dport == port]
    assert len(flows) == 1, flows
    (flow,) = flows
    assert (flow.dst, flow.verdict, flow.names) == (bridge, "rebind", ["host.rb.example.test"])
    assert "via synthetic" in flow.reason


def test_extra_records_do_not_give_another_name_an_address(
    run_coderun: Callable[..., Result],
    internet: DemoInternet,
    tmp_path: Path,
) -> None:
    """Item 10: ``poison.rb.example.test``'s reply also says ``api.example.test A
    <evil>`` (answer, authority and additional sections); an ``api.example.test`` rule
    must not open evil."""
    evil, nonce = internet.hosts["evil.example.test"], uuid.uuid4().hex[:8]
    text = """
[[rule]]
action = "allow"
host = "*.rb.example.test"
proto = "dns"

[[rule]]
action = "allow"
host = "api.example.test"
port = 80
proto = "tcp"
"""
    mark = len(internet.logs())
    result = run_coderun("--policy", policy(tmp_path, text), "-v", f"{PROBE}:/probe.py:ro",
                         "--", "python3", "/probe.py", "dns:poison.rb.example.test:A:7",
                         f"http:http://{evil}/poison-{nonce}",
                         f"http:http://api.example.test/api-{nonce}")  # fmt: skip
    got = step(result, "dns:poison.rb.example.test:A:7")["detail"]
    assert got["answers"] == [internet.ip] and got["sections"] == [1, 0, 0], got
    assert not step(result, f"http:http://{evil}/poison-{nonce}")["ok"]
    assert step(result, f"http:http://api.example.test/api-{nonce}")["ok"]  # control
    upstream = internet.logs(mark)
    assert f"api-{nonce}" in upstream and f"poison-{nonce}" not in upstream
    assert [(f.verdict, f.names) for f in result.flows(dst=evil)] == [("deny", [])]


def test_private_answers_allow_passes_private_ranges_but_never_the_host(
    run_coderun: Callable[..., Result],
    tmp_path: Path,
    bridge: str,
) -> None:
    """``--private-answers allow``: 10.x and 100.64.x answers reach the sandbox (only
    looked up here: nothing is sent to them); the host, loopback and metadata still not."""
    labels = ["private", "cgnat", "host", "loopback", "metadata"]
    result = run_coderun("--private-answers", "allow", "--policy", policy(tmp_path, ALLOW_RB),
                         "-v", f"{PROBE}:/probe.py:ro", "--", "python3", "/probe.py",
                         *[f"dns:{label}.rb.example.test:A:1" for label in labels])  # fmt: skip
    answers = {
        label: step(result, f"dns:{label}.rb.example.test:A:1")["detail"]["answers"]
        for label in labels
    }
    assert answers == {
        "private": ["10.11.12.13"], "cgnat": ["100.64.1.2"], "host": [], "loopback": [],
        "metadata": [],
    }  # fmt: skip
    assert [e.verdict for e in result.dns(qname="private.rb.example.test")] == ["allow"]
    assert bridge in result.dns(qname="host.rb.example.test")[0].reason
