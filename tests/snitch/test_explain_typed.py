"""One typed explanation: what the policy makes is what the control API carries and what
the dashboard renders (``Explanation.from_dict(e.to_dict()) == e``)."""

from __future__ import annotations

import json

from snitch.core.blocklist import Blocklist
from snitch.core.explain import NO_MATCH, Explanation, endpoint_query
from snitch.core.grammar import Origin
from snitch.core.model import Action, Proto, Rule
from snitch.core.policy import Policy

RULES = [
    Rule(Action.ALLOW, host="*.example.test", port_lo=443, port_hi=443, id=1, created=0),
    Rule(Action.DENY, host="api.example.test", proto=Proto.TCP, id=2, created=0, note="n"),
    Rule(Action.ALLOW, cidr="192.0.2.0/24", id=3, created=0),
]


def test_an_explanation_survives_the_api() -> None:
    policy = Policy(RULES, Blocklist(["bad.example.test"]))
    for host, port, proto in [
        ("api.example.test", 443, Proto.TCP), ("x.bad.example.test", 443, Proto.TCP),
        ("192.0.2.9", 80, Proto.UDP), ("nothing.test", 1, Proto.TCP),
        ("api.example.test", 53, Proto.DNS),
    ]:  # fmt: skip
        explained = policy.explain(endpoint_query(host, port, proto, profile="p"), now=1.0)
        wire = json.loads(json.dumps(explained.to_dict()))
        assert Explanation.from_dict(wire) == explained, host


def test_the_query_for_an_endpoint() -> None:
    by_name = endpoint_query("api.example.test", 443, Proto.TCP)
    assert (by_name.dst, by_name.names, by_name.port) == (None, ("api.example.test",), 443)
    by_address = endpoint_query("2001:db8::1", 443, Proto.TCP)
    assert (by_address.dst, by_address.names) == ("2001:db8::1", ())
    assert endpoint_query("a.test", 443, Proto.DNS).port == 0  # a lookup has no port


def test_headline() -> None:
    policy = Policy(RULES)
    won = policy.explain(endpoint_query("api.example.test", 443, Proto.TCP), now=1.0)
    assert won.headline == "deny: deny api.example.test/tcp"
    assert won.decision is not None and won.decision.origin is Origin.RULE
    none = policy.explain(endpoint_query("other.test", 443, Proto.TCP), now=1.0)
    assert none.headline == NO_MATCH and none.decision is None and none.matches == ()
