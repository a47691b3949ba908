"""The pod of a render: the init steps, the gateway sidecar and the workload.

- ``coderun-netfilter`` (init, root with NET_ADMIN and NET_RAW only): loads the pod's
  rules (podnet.py) from the ConfigMap, then exits;
- ``coderun-prepare`` (init, root with CHOWN only): lays out the gateway's folders, its
  files owned by the gateway's uid (its API token, the run's policy file, the decision
  service's credentials);
- ``coderun-gateway`` (a native sidecar: an init container with ``restartPolicy:
  Always``, so it starts before the workload and ends with it, also in a Job): the
  gateway, as ``GATEWAY_UID``, with NET_ADMIN only to read its queue;
- ``workload``: the command, non-root, no capabilities, no privilege escalation,
  seccomp RuntimeDefault, a read-only root with size-limited memory-backed scratch.
"""

from __future__ import annotations

import posixpath
from typing import Any

from sandbox.k8s.spec import DECISION_KEY, RenderSpec, cpu_quantity, quantity
from snitch.core.session_dir import POLICY, STATE
from snitch.core.settings import DATA_MOUNT, DECISION_FILE

CONFIG_MOUNT = "/etc/coderun"  # the ConfigMap, read-only
DECISION_MOUNT = "/etc/coderun-decision"  # the decision service's Secret (coderun-prepare)
GATEWAY_RUN = "/gateway-run"  # the gateway's /run, as coderun-prepare sees it
RULES_V4 = "pod-rules.v4"  # ConfigMap keys
RULES_V6 = "pod-rules.v6"
SETTINGS_KEY = "settings.json"
HOME = "/home/coderun"  # the images' user's home
SCRATCH = ("/tmp", "/var/tmp", HOME)
RUNTIME_DEFAULT = {"type": "RuntimeDefault"}

# The init step's one command: both rule files, loaded beside what the namespace has.
LOAD_RULES = (
    f"iptables-restore --noflush {CONFIG_MOUNT}/{RULES_V4} && "
    f"ip6tables-restore --noflush {CONFIG_MOUNT}/{RULES_V6}"
)
# Prepares the gateway's folders (emptyDirs), owned by the gateway's uid: the control
# API's token (new for every pod, never in a manifest), the run's policy file where the
# gateway reads it and, with a decision service, its credentials where it reads them
# once (and removes them).
PREPARE = """\
import os, secrets, shutil, sys
data, session, policy, uid = sys.argv[1:5]
uid = int(uid)
os.umask(0o077)
def own(path):
    os.chown(path, uid, uid)
folder = os.path.join(data, "sessions", session)
for path in (os.path.join(data, "rules"), folder):
    os.makedirs(path, exist_ok=True)
for path in (data, os.path.join(data, "rules"), os.path.join(data, "sessions"), folder):
    own(path)
token = os.path.join(data, "api-token")
fd = os.open(token, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
os.write(fd, secrets.token_hex(32).encode())
os.close(fd)
own(token)
shutil.copyfile(policy, os.path.join(folder, "policy.toml"))
own(os.path.join(folder, "policy.toml"))
if len(sys.argv) > 5:
    shutil.copyfile(sys.argv[5], sys.argv[6])
    own(sys.argv[6])
"""
# The gateway is started once it says it is ready (the workload waits for that).
READY = """\
import json, sys
state = json.load(open(sys.argv[1])).get("state")
sys.exit(0 if state == "ready" else 1)
"""


def config_map_name(spec: RenderSpec) -> str:
    return f"{spec.name}-gateway"


def _security(uid: int, gid: int, *, add: list[str] | None = None,
              escalate: bool = False) -> dict[str, Any]:  # fmt: skip
    caps: dict[str, Any] = {"drop": ["ALL"]}
    if add:
        caps["add"] = add
    return {
        "runAsUser": uid,
        "runAsGroup": gid,
        "runAsNonRoot": uid != 0,
        "allowPrivilegeEscalation": escalate,
        "privileged": False,
        "readOnlyRootFilesystem": True,
        "capabilities": caps,
        "seccompProfile": RUNTIME_DEFAULT,
    }


def _netfilter(spec: RenderSpec) -> dict[str, Any]:
    return {
        "name": "coderun-netfilter",
        "image": spec.gateway_image,
        "command": ["sh", "-c", LOAD_RULES],
        "securityContext": _security(0, 0, add=["NET_ADMIN", "NET_RAW"]),
        "volumeMounts": [
            {"name": "coderun-config", "mountPath": CONFIG_MOUNT, "readOnly": True},
            {"name": "coderun-xtables", "mountPath": "/run"},  # xtables.lock
        ],
    }


def _prepare(spec: RenderSpec) -> dict[str, Any]:
    command = ["python3", "-c", PREPARE, DATA_MOUNT, spec.name, f"{CONFIG_MOUNT}/{POLICY}",
               str(spec.gateway_uid)]  # fmt: skip
    mounts: list[dict[str, Any]] = [
        {"name": "coderun-config", "mountPath": CONFIG_MOUNT, "readOnly": True},
        {"name": "coderun-data", "mountPath": DATA_MOUNT},
        {"name": "coderun-gateway-run", "mountPath": GATEWAY_RUN},
    ]
    if spec.decision_service:
        command += [f"{DECISION_MOUNT}/{DECISION_KEY}",
                    f"{GATEWAY_RUN}/{posixpath.basename(DECISION_FILE)}"]  # fmt: skip
        mounts.append({"name": "coderun-decision", "mountPath": DECISION_MOUNT, "readOnly": True})
    # root for the owner of its files (CHOWN, nothing else): it reads the root-owned
    # Secret and hands every file to the gateway's uid.
    return {
        "name": "coderun-prepare",
        "image": spec.gateway_image,
        "command": command,
        "securityContext": _security(0, 0, add=["CHOWN"]),
        "volumeMounts": mounts,
    }


def _gateway(spec: RenderSpec) -> dict[str, Any]:
    uid = spec.gateway_uid
    mounts: list[dict[str, Any]] = [
        {"name": "coderun-data", "mountPath": DATA_MOUNT},
        {"name": "coderun-gateway-tmp", "mountPath": "/tmp"},
        # /run: iptables' lock, and the decision service's credentials (read, removed)
        {"name": "coderun-gateway-run", "mountPath": posixpath.dirname(DECISION_FILE)},
    ]
    return {
        "name": "coderun-gateway",
        "image": spec.gateway_image,
        "restartPolicy": "Always",  # a native sidecar (Kubernetes >= 1.29)
        "env": [{"name": "CODERUN_SETTINGS", "valueFrom": {"configMapKeyRef": {
            "name": config_map_name(spec), "key": SETTINGS_KEY}}}],
        # NET_ADMIN only to bind its queue and clear conntrack entries; the image gives
        # its python3 that capability as a file capability, which needs escalation on.
        "securityContext": _security(uid, uid, add=["NET_ADMIN"], escalate=True),
        "startupProbe": {
            "exec": {"command": ["python3", "-c", READY,
                                 f"{DATA_MOUNT}/sessions/{spec.name}/{STATE}"]},
            "periodSeconds": 1,
            "failureThreshold": 120,
        },
        "resources": {"limits": {"memory": "512Mi"}, "requests": {"cpu": "100m",
                                                                   "memory": "128Mi"}},
        "volumeMounts": mounts,
    }  # fmt: skip


def _workload(spec: RenderSpec) -> dict[str, Any]:
    w = spec.workload
    scratch = [*SCRATCH, *([w.workdir] if w.workdir and w.workdir not in SCRATCH else [])]
    limits = {"memory": quantity(w.memory)}
    if w.cpus is not None:
        limits["cpu"] = cpu_quantity(w.cpus)
    out: dict[str, Any] = {
        "name": "workload",
        "image": w.image,
        "command": list(w.command),
        "securityContext": _security(w.uid, w.gid),
        "resources": {"limits": limits},
        "volumeMounts": [{"name": f"scratch-{i}", "mountPath": p} for i, p in enumerate(scratch)],
    }
    if w.env:
        out["env"] = [{"name": k, "value": v} for k, v in w.env]
    if w.workdir:
        out["workingDir"] = w.workdir
    return out


def _volumes(spec: RenderSpec) -> list[dict[str, Any]]:
    w = spec.workload
    scratch = [*SCRATCH, *([w.workdir] if w.workdir and w.workdir not in SCRATCH else [])]
    memory = {"medium": "Memory", "sizeLimit": quantity(w.tmpfs_size)}
    return [
        {"name": "coderun-config", "configMap": {"name": config_map_name(spec),
                                                 "defaultMode": 0o444}},
        {"name": "coderun-data", "emptyDir": {}},
        {"name": "coderun-xtables", "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}},
        {"name": "coderun-gateway-tmp", "emptyDir": {"sizeLimit": "256Mi"}},
        {"name": "coderun-gateway-run", "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}},
        *_decision_volume(spec),
        *({"name": f"scratch-{i}", "emptyDir": dict(memory)} for i in range(len(scratch))),
    ]  # fmt: skip


def _decision_volume(spec: RenderSpec) -> list[dict[str, Any]]:
    if spec.decision_service is None:
        return []
    items = [{"key": DECISION_KEY, "path": DECISION_KEY}]
    secret = {"secretName": spec.decision_service.secret, "defaultMode": 0o400, "items": items}
    return [{"name": "coderun-decision", "secret": secret}]


def pod_spec(spec: RenderSpec) -> dict[str, Any]:
    """The ``spec`` of the pod (of a Pod, a Job's template, a Sandbox's podTemplate)."""
    out: dict[str, Any] = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "hostNetwork": False,
        "hostPID": False,
        "hostIPC": False,
        "shareProcessNamespace": False,
        "securityContext": {"seccompProfile": RUNTIME_DEFAULT},
        "initContainers": [_netfilter(spec), _prepare(spec), _gateway(spec)],
        "containers": [_workload(spec)],
        "volumes": _volumes(spec),
    }
    if spec.runtime_class:
        out["runtimeClassName"] = spec.runtime_class
    return out


def metadata(spec: RenderSpec, name: str) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name, "labels": dict(spec.labels)}
    if spec.namespace:
        out["namespace"] = spec.namespace
    return out


def workload_object(spec: RenderSpec) -> dict[str, Any]:
    """The Pod, or with ``--job`` a batch/v1 Job that runs it once."""
    if not spec.job:
        return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata(spec, spec.name),
                "spec": pod_spec(spec)}  # fmt: skip
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": metadata(spec, spec.name),
        "spec": {
            "backoffLimit": 0,
            "ttlSecondsAfterFinished": 3600,
            "template": {"metadata": {"labels": dict(spec.labels)}, "spec": pod_spec(spec)},
        },
    }
