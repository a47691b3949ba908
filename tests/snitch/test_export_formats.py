"""Unit tests of the export formats (pure functions, no kernel, no Docker)."""

from __future__ import annotations

import json
import re

import pytest
import yaml

from snitch.core.model import Action, Proto, Rule
from snitch.review.export import FORMATS, ExportError, ExportOptions, export
from snitch.review.export.common import addresses_for, prepare
from snitch.review.export.opensnitch import port_regex
from snitch.review.export.yamlout import dump_yaml

A, D = Action.ALLOW, Action.DENY


def allow(host: str | None = None, port: int = 0, proto: Proto = Proto.TCP, **kw: object) -> Rule:
    return Rule(A, host=host, port_lo=port, port_hi=port, proto=proto, **kw)  # type: ignore[arg-type]


SEEN = {
    "api.example.test": ["198.51.100.7", "2001:db8::7"],
    "a.cdn.test": ["198.51.100.20"],
    "b.b.cdn.test": ["198.51.100.21"],
    "ads.test": ["203.0.113.9"],
}


def test_every_format_is_registered_and_unknown_ones_fail() -> None:
    assert set(FORMATS) == {
        "nftables", "iptables", "lsrules", "opensnitch", "cilium", "k8s", "harden-runner"
    }  # fmt: skip
    with pytest.raises(ExportError, match="unknown format"):
        export([], {}, "pf")
    for fmt in FORMATS:
        assert export([], {}, fmt).text  # an empty rule set still gives a valid document


def test_prepare_orders_by_precedence_and_leaves_out_what_a_firewall_cannot_carry() -> None:
    rules = [
        allow("*.example.test", 443, id=1),
        allow("api.example.test", 443, id=2),
        Rule(D, cidr="198.51.100.0/24", id=3),
        allow("once.test", once_key="k", id=4),
        allow("sess.test", session="s1", id=5),
        allow("old.test", expires_at=1.0, id=6),
        allow("later.test", expires_at=4e9, id=7),
        allow("path.test", path_prefix="/v1", id=8),
        allow("off.test", enabled=False, id=9),
        allow("img.test", scope="image:python", id=10),
    ]
    prep = prepare(rules, now=1000.0)
    assert [r.id for r in prep.rules] == [3, 2, 7, 10, 1]
    text = "\n".join(prep.warnings)
    assert "2 once/session rules left out" in text
    assert "later.test" in text and "exported as permanent" in text
    assert "path.test" in text and "left out" in text
    assert "scope image:python exported as global" in text


def test_addresses_for_wildcards_cover_subdomains_not_the_apex() -> None:
    seen = {"cdn.test": ["192.0.2.1"], "a.cdn.test": ["192.0.2.2"], "b.a.cdn.test": ["192.0.2.2"]}
    assert addresses_for("*.cdn.test", seen) == {"192.0.2.2": ["a.cdn.test", "b.a.cdn.test"]}
    assert addresses_for("CDN.test.", seen) == {"192.0.2.1": ["cdn.test"]}


def test_nftables_names_sets_comments_and_tiers() -> None:
    rules = [allow("api.example.test", 443), Rule(D, host="ads.test"), allow("*.cdn.test", 80)]
    r = export(rules, SEEN, "nftables", ExportOptions(resolvers=["192.0.2.53"]))
    t = r.text
    assert t.startswith("#!/usr/sbin/nft -f")
    assert "table inet coderun {" in t and "policy drop;" in t
    assert "ct state established,related accept" in t
    assert "ip daddr { 192.0.2.53 } udp dport 53 accept" in t
    assert '198.51.100.7 . 443 comment "api.example.test"' in t
    assert '2001:db8::7 . 443 comment "api.example.test"' in t
    assert "set allow6_tcp" in t and "set deny4_all" in t and "set allow4_tcp_t2" in t
    # exact host > wildcard: allow api, then deny ads, then allow *.cdn: three tiers in order
    order = [t.index(s) for s in ("@allow4_tcp ", "@deny4_all ", "@allow4_tcp_t2 ")]
    assert order == sorted(order)
    assert any("addresses seen for it (203.0.113.9)" in w for w in r.warnings)
    assert "# warning: deny ads.test/any" in t


def test_nftables_overlapping_elements_are_merged_or_split() -> None:
    rules = [
        allow(cidr="10.0.0.0/8", port=0, proto=Proto.TCP),
        allow(cidr="10.1.2.3", port=443),  # covered by the /8: merged into its comment
        Rule(A, cidr="10.0.0.0/8", port_lo=8000, port_hi=8100, proto=Proto.UDP),
        Rule(A, cidr="10.1.2.3", port_lo=8050, port_hi=8200, proto=Proto.UDP),  # overlaps
    ]
    t = export(rules, {}, "nftables").text
    assert "10.1.2.3 . 443" not in t
    assert "set allow4_udp {" in t and "set allow4_udp_b2 {" in t


def test_nftables_port_ranges_are_written_whole() -> None:
    rules = [
        Rule(A, cidr="192.0.2.8", port_lo=8000, port_hi=8100, proto=Proto.TCP),
        Rule(A, cidr="192.0.2.9", port_lo=443, port_hi=443, proto=Proto.TCP),
        Rule(A, cidr="198.51.100.0/24", proto=Proto.UDP),  # any port
    ]
    t = export(rules, {}, "nftables").text
    elements = re.findall(r"\b\d+\.\d+\.\d+\.\d+(?:/\d+)? \. [\d-]+", t)
    assert sorted(elements) == [
        "192.0.2.8 . 8000-8100",
        "192.0.2.9 . 443",
        "198.51.100.0/24 . 0-65535",
    ]


def test_nftables_rejects_bad_names_and_resolvers() -> None:
    with pytest.raises(ExportError):
        export([], {}, "nftables", ExportOptions(name="bad name;"))
    with pytest.raises(ExportError):
        export([], {}, "nftables", ExportOptions(resolvers=["dns.example"]))


def test_iptables_lines_in_precedence_order_with_v6_block_and_ipset_hint() -> None:
    seen = {"many.test": [f"192.0.2.{i}" for i in range(10, 15)], **SEEN}
    rules = [allow("many.test", 443), Rule(D, cidr="192.0.2.12"), allow("api.example.test", 443)]
    t = export(rules, seen, "iptables").text
    v4 = [x for x in t.splitlines() if x.startswith("-A OUTPUT -d")]
    assert v4[0].startswith("-A OUTPUT -d 192.0.2.12/32") and v4[0].endswith("-j DROP")
    assert (
        '-d 198.51.100.7/32 -p tcp -m tcp --dport 443 -m comment --comment "api.example.test"' in t
    )
    assert "#6 -A OUTPUT -d 2001:db8::7/128 -p tcp" in t
    assert "# hint: 5 addresses for allow many.test:443/tcp" in t
    assert "ipset create coderun-r" in t
    assert t.count("COMMIT") == 2 and ":OUTPUT DROP [0:0]" in t


def test_lsrules_maps_targets() -> None:
    rules = [
        allow("api.example.test", 443),
        allow("*.cdn.test"),
        Rule(D, cidr="203.0.113.0/24", priority=3),
        Rule(A),
        allow("x.test", proto=Proto.DNS),
    ]
    r = export(rules, {}, "lsrules", ExportOptions(name="my group"))
    doc = json.loads(r.text)
    assert doc["name"] == "my group"
    by_note = {x["notes"].split(": ", 1)[1]: x for x in doc["rules"]}
    assert by_note["allow api.example.test:443/tcp"]["remote-hosts"] == ["api.example.test"]
    assert by_note["allow api.example.test:443/tcp"]["ports"] == "443"
    assert by_note["allow *.cdn.test/tcp"]["remote-domains"] == ["cdn.test"]
    deny = by_note["deny 203.0.113.0/24/any"]
    assert deny["remote-addresses"] == "203.0.113.0/24" and deny["priority"] == "high"
    assert by_note["allow */any"]["remote"] == "any"
    assert all(x["process"] == "any" for x in doc["rules"])
    assert any("no lookup rules" in w for w in r.warnings)
    assert any("also allows cdn.test itself" in w for w in r.warnings)


@pytest.mark.parametrize("lo,hi", [(1, 9), (8000, 8100), (1, 65535), (99, 1001), (443, 444)])
def test_port_regex_matches_exactly_the_range(lo: int, hi: int) -> None:
    rx = re.compile(port_regex(lo, hi))
    for p in range(0, 70000, 1 if hi - lo < 2000 else 7):
        assert bool(rx.match(str(p))) == (lo <= p <= hi), p
    for p in (lo, hi):
        assert rx.match(str(p))


def test_opensnitch_rules_are_ordered_and_first_match_wins() -> None:
    rules = [allow("*.example.test", 443), Rule(D, host="ads.example.test"), allow()]
    r = export(rules, {}, "opensnitch", ExportOptions(now=1_700_000_000))
    names = sorted(r.files)
    assert names[0].startswith("000-coderun-deny-ads-example-test")
    docs = [json.loads(r.files[n]) for n in names]
    assert all(d["precedence"] and d["duration"] == "always" for d in docs)
    wild = docs[1]["operator"]
    assert wild["type"] == "list"
    host = wild["list"][0]
    assert host["type"] == "regexp" and re.match(host["data"], "a.b.example.test")
    assert not re.match(host["data"], "example.test")
    tcp_anywhere = docs[2]["operator"]  # one condition: no list
    assert tcp_anywhere["operand"] == "protocol" and tcp_anywhere["data"] == "^tcp6?$"


def test_cilium_fqdn_dns_rule_and_deny() -> None:
    rules = [allow("api.example.test", 443), allow("*.cdn.test"), Rule(D, cidr="203.0.113.0/24")]
    doc = yaml.safe_load(export(rules, SEEN, "cilium").text)
    egress = doc["spec"]["egress"]
    dns = egress[0]
    assert dns["toEndpoints"][0]["matchLabels"]["k8s:k8s-app"] == "kube-dns"
    names = dns["toPorts"][0]["rules"]["dns"]
    assert {"matchName": "api.example.test"} in names
    assert {"matchPattern": "**.cdn.test"} in names
    fqdn = [e for e in egress if "toFQDNs" in e]
    assert {"matchName": "api.example.test"} in fqdn[0]["toFQDNs"]
    assert fqdn[0]["toPorts"][0]["ports"] == [{"port": "443", "protocol": "TCP"}]
    assert doc["spec"]["egressDeny"] == [{"toCIDRSet": [{"cidr": "203.0.113.0/24"}]}]


def test_k8s_ipblocks_dns_and_except() -> None:
    rules = [
        Rule(D, cidr="10.9.0.0/16"),
        Rule(A, cidr="10.0.0.0/8", port_lo=443, port_hi=443, proto=Proto.TCP),
        allow("api.example.test", 8000, proto=Proto.ANY),
        allow("gone.test", 443),
        allow("ping.test", proto=Proto.ICMP),
    ]
    r = export(rules, SEEN, "k8s", ExportOptions(namespace="ci"))
    doc = yaml.safe_load(r.text)
    assert doc["metadata"] == {"name": "coderun-egress", "namespace": "ci"}
    egress = doc["spec"]["egress"]
    assert egress[0]["ports"] == [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]
    blocks = {e["to"][0]["ipBlock"]["cidr"]: e for e in egress[1:]}
    assert blocks["10.0.0.0/8"]["to"][0]["ipBlock"]["except"] == ["10.9.0.0/16"]
    api = blocks["198.51.100.7/32"]
    assert {"ipBlock": {"cidr": "2001:db8::7/128"}} in api["to"]
    assert {"protocol": "UDP", "port": 8000} in api["ports"]
    assert any("gone.test seen" in w for w in r.warnings)
    assert any("cannot match ICMP" in w for w in r.warnings)
    assert "# warning: allow gone.test:443/tcp" in r.text


def test_harden_runner_endpoints() -> None:
    rules = [
        allow("api.example.test", 443),
        allow("*.cdn.test"),
        Rule(A, cidr="192.0.2.7", port_lo=8080, port_hi=8081, proto=Proto.TCP),
        Rule(D, host="ads.test"),
        Rule(A, cidr="10.0.0.0/8"),
    ]
    r = export(rules, {}, "harden-runner")
    step = yaml.safe_load(r.text)[0]
    assert step["uses"].startswith("step-security/harden-runner@")
    assert step["with"]["egress-policy"] == "block"
    assert step["with"]["allowed-endpoints"].split() == [
        "192.0.2.7:8080", "192.0.2.7:8081", "api.example.test:443",
        "*.cdn.test:443", "*.cdn.test:80",
    ]  # fmt: skip
    warned = "\n".join(r.warnings)
    assert "only allows" in warned and "cannot allow a network" in warned


def test_yaml_writer_round_trips() -> None:
    value = {
        "a": [{"b": "53", "c": [1, 2]}, [], {}],
        "k8s:odd key": "on",
        "n": None,
        "t": True,
        "nested": {"list": [["x"]]},
    }
    assert yaml.safe_load(dump_yaml(value, ["a comment"])) == value


def test_kubernetes_formats_need_a_dns_label_name() -> None:
    for fmt in ("cilium", "k8s"):
        with pytest.raises(ExportError, match="bad policy name"):
            export([], {}, fmt, ExportOptions(name="My_Policy"))
        assert 'name: "ci-run-egress"' in export([], {}, fmt, ExportOptions(name="ci-run")).text
