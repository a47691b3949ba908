"""The pod's rules (snitch/gateway/podrules.py): what the init step installs, as text.

The rules themselves are proven on a real namespace by tests/escape/test_pod.py and the
walking skeleton's pod runs; here, the shape every caller (the init step, the
Kubernetes renderer) relies on."""

from __future__ import annotations

import pytest

from snitch.gateway.netfilter import DENY_MARK
from snitch.gateway.podrules import (
    CHAIN,
    GATEWAY_PORTS,
    POD_DNS_PORT,
    POD_PROXY_PORT,
    main,
    pod_rules,
    pod_rules6,
)


def table(rules: str, name: str) -> list[str]:
    """The lines of one table of an iptables-restore text."""
    lines = rules.splitlines()
    start = lines.index(f"*{name}")
    end = lines.index("COMMIT", start)
    return lines[start + 1 : end]


def test_the_workloads_new_flows_are_queued_without_bypass_and_the_gateway_is_exempt() -> None:
    rules = pod_rules(1337, queue_num=3)
    mangle = table(rules, "mangle")
    assert mangle[1] == f"-I OUTPUT 1 -j {CHAIN}"  # first: before anything else there
    assert mangle[2] == f"-A {CHAIN} -m owner --uid-owner 1337 -j RETURN"
    queued = [line for line in mangle if "NFQUEUE" in line]
    assert len(queued) == 2 and all("--queue-num 3" in line for line in queued)
    assert "bypass" not in rules  # fail closed: no listener, no traffic
    for name in ("mangle", "nat", "filter"):  # every table exempts the gateway first
        first = next(line for line in table(rules, name) if line.startswith(f"-A {CHAIN}"))
        assert first == f"-A {CHAIN} -m owner --uid-owner 1337 -j RETURN"


def test_dns_to_anywhere_goes_to_the_forwarder_before_dockers_resolver() -> None:
    nat = table(pod_rules(0), "nat")
    assert nat[2] == f"-I OUTPUT 1 -j {CHAIN}"
    for proto in ("udp", "tcp"):
        assert f"-A {CHAIN} -p {proto} --dport 53 -j REDIRECT --to-ports {POD_DNS_PORT}" in nat
    flt = table(pod_rules(0), "filter")
    assert f"-A {CHAIN} -d 127.0.0.11 -j DROP" in flt
    assert f"-A {CHAIN} -p udp --dport 53 -j DROP" in flt  # what was not redirected


def test_web_ports_go_to_the_proxy_unless_refused() -> None:
    nat = table(pod_rules(0, web_ports=(80, 443)), "nat")
    mark = f"0x{DENY_MARK:x}/0x{DENY_MARK:x}"
    refused = nat.index(f"-A {CHAIN} -m mark --mark {mark} -j RETURN")
    redirect = nat.index(
        f"-A {CHAIN} -p tcp -m multiport --dports 80,443 -j REDIRECT --to-ports {POD_PROXY_PORT}"
    )
    assert refused < redirect < nat.index(f"-A {CHAIN} -j CODERUN_FAKE")
    assert not any("REDIRECT --to-ports 15001" in line for line in table(pod_rules(0), "nat"))


def test_the_gateways_ports_are_reached_only_through_the_redirects() -> None:
    flt = table(pod_rules(0, web_ports=(80,)), "filter")
    low, high = GATEWAY_PORTS
    assert low <= POD_DNS_PORT <= high and low <= POD_PROXY_PORT <= high
    reject = flt.index(f"-A {CHAIN} -m addrtype --dst-type LOCAL -p tcp --dport {low}:{high} "
                       "-j REJECT --reject-with tcp-reset")  # fmt: skip
    allowed = [i for i, line in enumerate(flt) if "--ctstate DNAT -j RETURN" in line]
    assert len(allowed) == 3 and max(allowed) < reject  # DNS udp/tcp, the proxy
    mark = f"0x{DENY_MARK:x}/0x{DENY_MARK:x}"
    assert f"-A {CHAIN} -m mark --mark {mark} -p tcp -j REJECT --reject-with tcp-reset" in flt


def test_ipv6_leaves_for_the_gateway_only() -> None:
    flt = table(pod_rules6(7), "filter")
    assert flt[-2:] == [f"-A {CHAIN} -m owner --uid-owner 7 -j RETURN", f"-A {CHAIN} -j DROP"]


@pytest.mark.parametrize("kw", [{"dns_port": 0}, {"web_ports": (70000,)}, {"proxy_port": -1}])
def test_bad_ports_are_refused(kw: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="not in 1-65535"):
        pod_rules(0, **kw)  # type: ignore[arg-type]


def test_a_negative_uid_is_refused() -> None:
    with pytest.raises(ValueError):
        pod_rules(-1)


def test_the_init_step_prints_what_it_would_apply(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--gateway-uid", "5", "--web-ports", "80,443", "--print"]) == 0
    assert capsys.readouterr().out == pod_rules(5, web_ports=(80, 443))
    assert main(["--gateway-uid", "5", "--dns-port", "0", "--print"]) == 1
    assert "not in 1-65535" in capsys.readouterr().err
