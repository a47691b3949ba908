"""A Kubernetes NetworkPolicy (YAML): egress to ``ipBlock`` peers, plus DNS.

NetworkPolicy only allows; whatever it does not allow is denied once a pod is selected.
A deny rule that outranks an allow of a wider network becomes an ``except`` of that
``ipBlock`` (when it covers the same ports); other deny rules need nothing. Names become
the addresses the logs saw for them. ICMP cannot be expressed and is left out.
"""

from __future__ import annotations

import ipaddress
import json
from typing import Any

from snitch.core.model import Action, Proto, Rule
from snitch.review.export.common import (
    ExportOptions,
    ExportResult,
    IPNetwork,
    Resolutions,
    destinations,
    header,
    l4,
    name_warnings,
    policy_name,
    prepare,
)
from snitch.review.export.yamlout import dump_yaml

_ANY = ("0.0.0.0/0", "::/0")


def _ports(rule: Rule) -> list[dict[str, Any]] | None:
    out = []
    for proto, lo, hi in l4(rule):
        if proto == "all":
            return None
        entry: dict[str, Any] = {"protocol": proto.upper()}
        if lo:
            entry["port"] = lo
            if hi != lo:
                entry["endPort"] = hi
        out.append(entry)
    return out


def _covers_ports(deny: Rule, allow: Rule) -> bool:
    return (deny.proto is Proto.ANY and not deny.port_lo) or l4(deny) == l4(allow)


def _excepts(
    index: int, allow: Rule, net: IPNetwork, denies: list[tuple[int, Rule, list[IPNetwork]]]
) -> list[str]:
    out = []
    for d_index, deny, nets in denies:
        if d_index > index or not _covers_ports(deny, allow):
            continue  # the allow outranks the deny, or the deny is about other ports
        for n in nets:
            if n.version == net.version and n != net and n.subnet_of(net):  # type: ignore[arg-type]
                out.append(str(n))
    return sorted(set(out))


def export_k8s(rules: list[Rule], resolutions: Resolutions, opts: ExportOptions) -> ExportResult:
    prep = prepare(rules, opts.now)
    warnings = list(prep.warnings)
    denies: list[tuple[int, Rule, list[IPNetwork]]] = []
    for i, rule in enumerate(prep.rules):
        if rule.action is Action.DENY and rule.proto is not Proto.DNS:
            dests = destinations(rule, resolutions)
            warnings.extend(name_warnings(rule, dests, ip_only=True))
            nets = (
                [ipaddress.ip_network(a) for a in _ANY] if dests is None else [d.net for d in dests]
            )
            denies.append((i, rule, nets))
    groups: dict[str, dict[str, Any]] = {}
    for i, rule in enumerate(prep.rules):
        if rule.action is Action.DENY or rule.proto is Proto.DNS:
            continue
        if rule.proto is Proto.ICMP:
            warnings.append(f"{rule.describe()}: NetworkPolicy cannot match ICMP; left out")
            continue
        dests = destinations(rule, resolutions)
        warnings.extend(name_warnings(rule, dests, ip_only=True))
        if dests == []:
            continue
        nets = [ipaddress.ip_network(a) for a in _ANY] if dests is None else [d.net for d in dests]
        ports = _ports(rule)
        key = json.dumps(ports)
        slot = groups.setdefault(key, {"to": []} | ({"ports": ports} if ports else {}))
        for net in nets:
            block: dict[str, Any] = {"cidr": str(net)}
            excepts = _excepts(i, rule, net, denies)
            if excepts:
                block["except"] = excepts
            if {"ipBlock": block} not in slot["to"]:
                slot["to"].append({"ipBlock": block})
    dns_ports = [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]
    peers: list[dict[str, Any]]
    if opts.resolvers:
        peers = [{"ipBlock": {"cidr": str(ipaddress.ip_network(r))}} for r in opts.resolvers]
    else:
        peers = [
            {
                "namespaceSelector": {
                    "matchLabels": {"kubernetes.io/metadata.name": "kube-system"}
                },
                "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
            }
        ]
    egress = [{"to": peers, "ports": dns_ports}, *groups.values()]
    metadata: dict[str, Any] = {"name": policy_name(opts)}
    if opts.namespace:
        metadata["namespace"] = opts.namespace
    doc = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": metadata,
        "spec": {
            "podSelector": {"matchLabels": dict(opts.labels)},
            "policyTypes": ["Egress"],
            "egress": egress,
        },
    }
    comments = header("k8s", opts, len(prep.rules)) + [f"warning: {w}" for w in warnings]
    return ExportResult(text=dump_yaml(doc, comments), warnings=warnings)
