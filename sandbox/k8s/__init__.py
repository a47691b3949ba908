"""``coderun k8s render``: the Kubernetes manifests that run a coderun session in a pod.

``spec.py`` holds what a render is made of (checked: names, uids, the runtime class),
``podnet.py`` the netfilter rules the pod's init container installs, ``pod.py`` the pod
(its init step, the gateway sidecar, the workload), ``network.py`` the NetworkPolicies,
``agent_sandbox.py`` the kubernetes-sigs agent-sandbox objects, ``render.py`` the whole
multi-document YAML. Nothing here talks to Docker or to a cluster (docs/scale.md).
"""
