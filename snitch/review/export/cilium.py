"""A CiliumNetworkPolicy (YAML): ``toFQDNs`` for names, ``toCIDRSet`` for addresses.

``toFQDNs`` only works when Cilium's DNS proxy sees the pod's lookups, so the policy also
allows DNS to kube-dns (or the given resolvers) with an L7 ``dns`` rule listing exactly
the allowed names. ``*.domain`` becomes ``matchPattern: "**.domain"`` (every subdomain
level; Cilium releases without ``**`` treat it as one level). Deny rules go to
``egressDeny``, which only takes addresses, and which Cilium applies before any allow.
"""

from __future__ import annotations

import ipaddress
import json
from typing import Any

from snitch.core.model import Action, Proto, Rule
from snitch.review.export.common import (
    ExportOptions,
    ExportResult,
    Resolutions,
    destinations,
    header,
    name_warnings,
    policy_name,
    prepare,
)
from snitch.review.export.yamlout import dump_yaml

KUBE_DNS = {"k8s:io.kubernetes.pod.namespace": "kube-system", "k8s:k8s-app": "kube-dns"}


def _ports(rule: Rule) -> list[dict[str, Any]] | None:
    """The toPorts ports of a rule; None when it covers every protocol and port."""
    if rule.proto is Proto.ICMP:
        return None
    proto = {Proto.TCP: "TCP", Proto.UDP: "UDP"}.get(rule.proto, "ANY")
    lo, hi = (rule.port_lo, rule.port_hi) if rule.port_lo else (1, 65535)
    if not rule.port_lo and proto == "ANY":
        return None
    port: dict[str, Any] = {"port": str(lo), "protocol": proto}
    if hi != lo:
        port["endPort"] = hi
    return [port]


def _l4(rule: Rule) -> dict[str, Any]:
    out: dict[str, Any] = {}
    ports = _ports(rule)
    if ports is not None:
        out["toPorts"] = [{"ports": ports}]
    if rule.proto is Proto.ICMP:
        fields = [{"family": "IPv4", "type": 8}, {"family": "IPv6", "type": 128}]
        out["icmps"] = [{"fields": fields}]
    return out


def _selector(host: str) -> dict[str, str]:
    if host.startswith("*."):
        return {"matchPattern": "**." + host[2:]}
    return {"matchName": host}


def _cidr(net: str) -> str:
    n = ipaddress.ip_network(net, strict=False)
    return str(n)


def export_cilium(rules: list[Rule], resolutions: Resolutions, opts: ExportOptions) -> ExportResult:
    prep = prepare(rules, opts.now)
    warnings = list(prep.warnings)
    by_l4: dict[str, dict[str, Any]] = {}  # one egress rule per port spec and kind of peer
    dns: list[dict[str, str]] = []
    deny: list[dict[str, Any]] = []
    for rule in prep.rules:
        if rule.action is Action.DENY:
            if rule.proto is Proto.DNS:
                warnings.append(f"{rule.describe()}: Cilium cannot refuse lookups by name")
                continue
            dests = destinations(rule, resolutions)
            if dests is None:
                warnings.append(f"{rule.describe()}: left out (unmatched traffic is denied)")
                continue
            warnings.extend(name_warnings(rule, dests, ip_only=True))
            if dests:
                entry: dict[str, Any] = {"toCIDRSet": [{"cidr": str(d.net)} for d in dests]}
                ports = _ports(rule)
                if ports is not None:
                    entry["toPorts"] = [{"ports": ports}]
                deny.append(entry)
            continue
        if rule.host is not None and _selector(rule.host) not in dns:
            dns.append(_selector(rule.host))
        if rule.proto is Proto.DNS:
            continue
        l4 = _l4(rule)
        value: object
        if rule.cidr is not None:
            peer, value = "toCIDRSet", {"cidr": _cidr(rule.cidr)}
        elif rule.host is not None:
            peer, value = "toFQDNs", _selector(rule.host)
        else:
            peer, value = "toEntities", "world"
            if {"matchPattern": "*"} not in dns:
                dns.append({"matchPattern": "*"})
        key = peer + json.dumps(l4, sort_keys=True)
        slot = by_l4.setdefault(key, {peer: [], **l4})
        if value not in slot[peer]:
            slot[peer].append(value)
    egress: list[dict[str, Any]] = []
    if dns:
        if opts.resolvers:
            to: dict[str, Any] = {"toCIDRSet": [{"cidr": _cidr(r)} for r in opts.resolvers]}
        else:
            to = {"toEndpoints": [{"matchLabels": dict(KUBE_DNS)}]}
        dns_ports = [{"port": "53", "protocol": "ANY"}]
        egress.append({**to, "toPorts": [{"ports": dns_ports, "rules": {"dns": dns}}]})
    egress.extend(by_l4.values())
    metadata: dict[str, Any] = {"name": policy_name(opts)}
    if opts.namespace:
        metadata["namespace"] = opts.namespace
    spec: dict[str, Any] = {
        "description": f"Egress allowlist exported by coderun from {opts.source}",
        "endpointSelector": {"matchLabels": dict(opts.labels)},
    }
    if egress:
        spec["egress"] = egress
    if deny:
        spec["egressDeny"] = deny
    if not egress and not deny:
        spec["egress"] = [{}]  # an empty rule: the pods are selected, nothing is allowed
    doc = {
        "apiVersion": "cilium.io/v2",
        "kind": "CiliumNetworkPolicy",
        "metadata": metadata,
        "spec": spec,
    }
    by_address = any(r.action is Action.DENY and r.host for r in prep.rules)
    comments = header("cilium", opts, len(prep.rules), addresses=by_address)
    comments += [f"warning: {w}" for w in warnings]
    return ExportResult(text=dump_yaml(doc, comments), warnings=warnings)
