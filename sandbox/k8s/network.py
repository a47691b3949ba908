"""The pod's NetworkPolicies: its own, and the rule exports as a second layer.

The pod's policy (``NAME-pod``) lets nothing in and lets out only what the gateway's path
needs: DNS to the cluster's resolver (the gateway's upstream), the decision service
(``--decision-service``) and, unless the rules alone decide (enforce mode), the public
internet, never the cluster's private ranges nor link-local (cloud metadata) addresses.

Kubernetes adds up the NetworkPolicies that select a pod (a union of what they allow), so
the exported rules (``coderun export --format k8s`` / ``cilium``, snitch/review/export)
narrow the pod only in enforce mode, where the pod's own policy allows no internet: then
the pod reaches exactly the addresses the rules allow, whatever happens to the gateway.
"""

from __future__ import annotations

from typing import Any

import yaml

from sandbox.k8s.pod import metadata
from sandbox.k8s.spec import RenderSpec
from snitch.core.model import Mode
from snitch.core.settings import PrivateAnswers
from snitch.review.export import ExportOptions, export

# Never reachable from the pod, whatever the rules say.
LINK_LOCAL = ("169.254.0.0/16", "127.0.0.0/8")
PRIVATE = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10")
KUBE_DNS = {
    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
    "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
}
DNS_PORTS = [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]
LAYERS = ("k8s", "cilium")  # the exports appended as the second layer


def _resolvers(spec: RenderSpec) -> list[dict[str, Any]]:
    upstream = spec.network.dns_upstream
    if upstream:
        bits = 32 if ":" not in upstream else 128
        return [{"ipBlock": {"cidr": f"{upstream}/{bits}"}}]
    return [KUBE_DNS]


def _decision_service(spec: RenderSpec, warnings: list[str]) -> list[dict[str, Any]]:
    service = spec.decision_service
    if service is None:
        return []
    ports = [{"protocol": "TCP", "port": service.port}]
    if service.address:
        bits = 32 if ":" not in service.address else 128
        return [{"to": [{"ipBlock": {"cidr": f"{service.address}/{bits}"}}], "ports": ports}]
    if service.namespace:
        selector = {"matchLabels": {"kubernetes.io/metadata.name": service.namespace}}
        return [{"to": [{"namespaceSelector": selector}], "ports": ports}]
    warnings.append(f"decision service {service.host}: a NetworkPolicy cannot name hosts; "
                    f"TCP port {service.port} is allowed to any address")  # fmt: skip
    return [{"ports": ports}]


def _internet(spec: RenderSpec) -> list[dict[str, Any]]:
    if spec.run.mode is Mode.ENFORCE:
        return []  # the rules decide: the exported layer says where
    closed = list(LINK_LOCAL)
    if spec.run.private_answers is PrivateAnswers.DENY:
        closed += PRIVATE
    return [{"to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": closed}}]}]


def pod_policy(spec: RenderSpec, warnings: list[str]) -> dict[str, Any]:
    """``NAME-pod``: nothing in; DNS, the decision service and (not enforce) the internet out."""
    egress = [
        {"to": _resolvers(spec), "ports": DNS_PORTS},
        *_decision_service(spec, warnings),
        *_internet(spec),
    ]
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": metadata(spec, f"{spec.name}-pod"),
        "spec": {
            "podSelector": {"matchLabels": dict(spec.selector)},
            "policyTypes": ["Ingress", "Egress"],
            "egress": egress,
        },
    }


def rule_layers(spec: RenderSpec, warnings: list[str]) -> list[dict[str, Any]]:
    """The rules as ``coderun export`` writes them for Kubernetes and Cilium."""
    opts = ExportOptions(
        name=spec.name,
        source="the run's policy",
        resolvers=[spec.network.dns_upstream] if spec.network.dns_upstream else [],
        labels=dict(spec.selector),
        namespace=spec.namespace,
    )
    seen = {name: list(addrs) for name, addrs in spec.resolutions.items()}
    out = []
    for fmt in LAYERS:
        result = export(list(spec.rules), seen, fmt, opts)
        warnings.extend(f"{fmt}: {w}" for w in result.warnings)
        out.append(yaml.safe_load(result.text))
    return out
