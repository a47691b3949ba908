"""``--output agent-sandbox``: the pod as kubernetes-sigs agent-sandbox objects.

Written for agent-sandbox v0.5.6 (its CRDs ``sandboxes.agents.x-k8s.io`` and
``sandboxtemplates.extensions.agents.x-k8s.io``, both served as ``v1beta1``): a
``Sandbox`` that runs the pod once, and a ``SandboxTemplate`` for claims and warm pools.
Both carry the same pod template. The template's ``networkPolicyManagement`` is
``Unmanaged``: its controller's default policy allows the public internet, and
Kubernetes adds policies up, so it would undo the pod's own NetworkPolicies (network.py),
which select these pods by their labels as they do the plain Pod's.
"""

from __future__ import annotations

from typing import Any

from sandbox.k8s.pod import metadata, pod_spec
from sandbox.k8s.spec import RenderSpec

VERSION = "v0.5.6"  # the agent-sandbox release whose CRDs these objects were checked against
SANDBOX_API = "agents.x-k8s.io/v1beta1"
TEMPLATE_API = "extensions.agents.x-k8s.io/v1beta1"


def _template(spec: RenderSpec) -> dict[str, Any]:
    return {"metadata": {"labels": dict(spec.labels)}, "spec": pod_spec(spec)}


def sandbox(spec: RenderSpec) -> dict[str, Any]:
    """A ``Sandbox`` running the pod (deleted, not kept, once it is shut down)."""
    return {
        "apiVersion": SANDBOX_API,
        "kind": "Sandbox",
        "metadata": metadata(spec, spec.name),
        "spec": {"podTemplate": _template(spec), "shutdownPolicy": "Delete"},
    }


def sandbox_template(spec: RenderSpec) -> dict[str, Any]:
    """A ``SandboxTemplate`` of the pod, its network left to the pod's own policies."""
    return {
        "apiVersion": TEMPLATE_API,
        "kind": "SandboxTemplate",
        "metadata": metadata(spec, spec.name),
        "spec": {
            "podTemplate": _template(spec),
            "networkPolicyManagement": "Unmanaged",
            "envVarsInjectionPolicy": "Disallowed",
        },
    }
