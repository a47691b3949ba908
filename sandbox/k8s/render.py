"""The whole render: every object as one multi-document YAML stream (PyYAML).

Order: the ConfigMap (the run's policy, the gateway's settings, the pod's rules), the
Pod or Job (or the agent-sandbox objects), the pod's NetworkPolicy, then the rule
exports (Kubernetes, Cilium) as a second layer. Warnings (what the exports left out, what
a NetworkPolicy cannot say) come back to print on stderr and lead the YAML as comments.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from typing import Any

import yaml

from sandbox.k8s import agent_sandbox, network, pod
from sandbox.k8s.podnet import init_rules
from sandbox.k8s.spec import Output, RenderSpec
from snitch.core.policyfile import dump_policy
from snitch.core.session_dir import POLICY
from snitch.core.settings import GatewaySettings, Topology, to_dict

NO_EGRESS_NETWORK = "0.0.0.0/32"  # a pod has no egress network of its own


@dataclass
class Rendered:
    documents: list[dict[str, Any]]
    warnings: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        head = ['# coderun k8s render (docs/scale.md, "Kubernetes manifests")']
        head += [f"# warning: {_one_line(w)}" for w in self.warnings]
        body = yaml.dump_all(self.documents, Dumper=_Dumper, sort_keys=False,
                             default_flow_style=False, explicit_start=True)  # fmt: skip
        return "\n".join(head) + "\n" + body


class _Dumper(yaml.SafeDumper):
    """Safe YAML whose multi-line strings (rule files, scripts) are literal blocks, with
    every repeated value written out (no anchors: each object reads on its own)."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def _one_line(text: str) -> str:
    return "".join(c if c.isprintable() else " " for c in text)


def gateway_settings(spec: RenderSpec) -> GatewaySettings:
    """What the gateway sidecar starts with (``CODERUN_SETTINGS``, from the ConfigMap)."""
    return GatewaySettings(
        session=spec.name,
        egress_subnet=NO_EGRESS_NETWORK,
        network=replace(spec.network, gateway_image=spec.gateway_image, topology=Topology.POD),
        run=replace(spec.run, policy=POLICY),
        uid=spec.gateway_uid,
        gid=spec.gateway_uid,
    )


def config_map(spec: RenderSpec) -> dict[str, Any]:
    rules = init_rules(spec.gateway_uid, spec.network.web_ports)
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": pod.metadata(spec, pod.config_map_name(spec)),
        "data": {
            POLICY: dump_policy(spec.rules),
            pod.SETTINGS_KEY: json.dumps(to_dict(gateway_settings(spec)), indent=2, sort_keys=True)
            + "\n",  # fmt: skip
            pod.RULES_V4: rules.v4,
            pod.RULES_V6: rules.v6,
        },
    }


def render(spec: RenderSpec) -> Rendered:
    warnings: list[str] = []
    docs = [config_map(spec)]
    if spec.output is Output.AGENT_SANDBOX:
        docs += [agent_sandbox.sandbox(spec), agent_sandbox.sandbox_template(spec)]
    else:
        docs.append(pod.workload_object(spec))
    docs.append(network.pod_policy(spec, warnings))
    docs += network.rule_layers(spec, warnings)
    return Rendered(docs, warnings)
