"""`coderun k8s render`: its manifests against Kubernetes' own schemas (kubernetes-validate,
strict: no unknown field passes), what they say (uids, capabilities, the runtime class,
the policies), and its refusals of bad options (usage errors, exit 2)."""

from __future__ import annotations

import functools
import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from click.testing import CliRunner, Result

from sandbox.cli import main
from sandbox.k8s.pod import PREPARE
from sandbox.k8s.podnet import DNS_PORT, PROXY_PORT
from snitch.core.policyfile import loads_policy
from snitch.core.settings import GatewaySettings, Topology, from_json
from snitch.gateway.podrules import pod_rules

# The Kubernetes versions the manifests are checked against (docs/scale.md names them):
# the first with native sidecars on by default, and later ones.
VERSIONS = ("1.29", "1.33", "1.37")
CILIUM_SCHEMA = (
    Path(__file__).parent.parent / "export" / "schemas" / "cilium-network-policy.schema.json"
)
POLICY = """\
[[rule]]
action = "allow"
cidr = "198.51.100.0/24"
port = 443
proto = "tcp"

[[rule]]
action = "allow"
host = "api.example.test"
port = 443
proto = "tcp"
"""
PROFILE = """\
#!/usr/bin/env -S coderun exec
name = "unit-tests"
image = "python"
command = ["pytest", "-q"]
workdir = "/work"
mode = "enforce"

[limits]
memory = "1g"
user = "2000"

[[rule]]
action = "allow"
host = "pypi.test"
port = 443
proto = "tcp"
"""


def v4_rules_of_the_gateway() -> str:
    """What `coderun run --topology pod` installs: the renderer's init step says the same."""
    return pod_rules(10001, web_ports=(80, 443, 8080))


def render(*args: str) -> Result:
    return CliRunner().invoke(main, ["k8s", "render", *args], catch_exceptions=False)


def documents(*args: str) -> list[dict[str, Any]]:
    result = render(*args)
    assert result.exit_code == 0, result.output
    return [d for d in yaml.safe_load_all(result.stdout) if d is not None]


def kind(docs: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == name]


def pod_spec(docs: list[dict[str, Any]]) -> dict[str, Any]:
    for doc in docs:
        if doc["kind"] == "Pod":
            return dict(doc["spec"])
        if doc["kind"] == "Job":
            return dict(doc["spec"]["template"]["spec"])
        if doc["kind"] in ("Sandbox", "SandboxTemplate"):
            return dict(doc["spec"]["podTemplate"]["spec"])
    raise AssertionError("no pod in the render")


def containers(spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in [*spec["initContainers"], *spec["containers"]]}


def validate(doc: dict[str, Any], version: str) -> None:
    kubernetes_validate.validate(doc, version, strict=True)


@functools.cache
def cilium_validator() -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(json.loads(CILIUM_SCHEMA.read_text()))


@pytest.fixture()
def policy(tmp_path: Path) -> Path:
    path = tmp_path / "policy.toml"
    path.write_text(POLICY)
    return path


@pytest.fixture()
def profile(tmp_path: Path) -> Path:
    path = tmp_path / "unit-tests.toml"
    path.write_text(PROFILE)
    return path


RENDERS = {
    "pod": ["--", "make", "test"],
    "job-gvisor": ["--job", "--runtime-class", "gvisor", "--namespace", "ci", "--name",
                   "build-7", "-e", "CI=1", "-w", "/src", "--cpus", "1.5", "--", "make"],
    "ask": ["--decision-service", "https://decide.coderun.svc:8443", "--decision-secret",
            "coderun-decision", "--label", "team=ci", "--", "sh", "-c", "curl api.example.test"],
    "agent-sandbox": ["--output", "agent-sandbox", "--", "true"],
}  # fmt: skip


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("case", RENDERS)
def test_every_object_validates(home: Path, policy: Path, case: str, version: str) -> None:
    docs = documents("--policy", str(policy), *RENDERS[case])
    kinds = [d["kind"] for d in docs]
    assert kinds[0] == "ConfigMap" and "NetworkPolicy" in kinds and "CiliumNetworkPolicy" in kinds
    for doc in docs:
        if doc["kind"] == "CiliumNetworkPolicy":  # a CRD: the export's own schema
            errors = list(cilium_validator().iter_errors(doc))
            assert not errors, errors
        elif doc["kind"] in ("Sandbox", "SandboxTemplate"):  # CRDs: their pod as a Pod
            pod = {"apiVersion": "v1", "kind": "Pod", "metadata": doc["spec"]["podTemplate"]
                   ["metadata"] | {"name": doc["metadata"]["name"]},
                   "spec": doc["spec"]["podTemplate"]["spec"]}  # fmt: skip
            validate(pod, version)
        else:
            validate(doc, version)


def test_the_schemas_can_fail(home: Path) -> None:
    """The checks above are real: a typo, a wrong type, and a field older Kubernetes
    lacks (a native sidecar's restartPolicy, 1.28's alpha) are refused."""
    docs = documents("--", "true")
    pod = kind(docs, "Pod")[0]
    typo = json.loads(json.dumps(pod))
    typo["spec"]["containers"][0]["securityContext"]["runAsNonroot"] = True
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(typo, "1.33")
    wrong = json.loads(json.dumps(pod))
    wrong["spec"]["containers"][0]["securityContext"]["runAsUser"] = "1000"
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(wrong, "1.33")
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(pod, "1.27")


def test_workload_gateway_and_init_step(home: Path) -> None:
    spec = pod_spec(documents("--runtime-class", "gvisor", "--", "make", "test"))
    assert spec["runtimeClassName"] == "gvisor"
    assert spec["automountServiceAccountToken"] is False
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    by_name = containers(spec)
    assert [c["name"] for c in spec["initContainers"]] == [
        "coderun-netfilter", "coderun-prepare", "coderun-gateway"]  # fmt: skip
    work = by_name["workload"]
    assert work["command"] == ["make", "test"]
    assert work["image"] == "coderun-sandbox-bash:latest"
    sc = work["securityContext"]
    assert sc["runAsNonRoot"] is True and sc["runAsUser"] == 1000
    assert sc["allowPrivilegeEscalation"] is False and sc["privileged"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert sc["readOnlyRootFilesystem"] is True
    assert work["resources"]["limits"]["memory"] == "2Gi"
    init = by_name["coderun-netfilter"]["securityContext"]
    assert init["capabilities"] == {"drop": ["ALL"], "add": ["NET_ADMIN", "NET_RAW"]}
    gateway = by_name["coderun-gateway"]
    assert gateway["restartPolicy"] == "Always"  # a native sidecar: ends with the workload
    gsc = gateway["securityContext"]
    assert gsc["runAsNonRoot"] is True and gsc["runAsUser"] == 10001 != sc["runAsUser"]
    assert gsc["capabilities"] == {"drop": ["ALL"], "add": ["NET_ADMIN"]}
    prepare = by_name["coderun-prepare"]["securityContext"]
    assert prepare["capabilities"] == {"drop": ["ALL"], "add": ["CHOWN"]}
    # Only the gateway and its init steps see the data folder (its API token).
    assert all(m["name"] != "coderun-data" for m in work["volumeMounts"])
    for c in by_name.values():
        assert c["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}


def test_config_map_holds_policy_settings_and_rules(home: Path, policy: Path) -> None:
    docs = documents("--policy", str(policy), "--web-ports", "80,443,8080", "--", "true")
    data = kind(docs, "ConfigMap")[0]["data"]
    rules = loads_policy(data["policy.toml"]).rules
    assert {r.cidr or r.host for r in rules} == {"198.51.100.0/24", "api.example.test"}
    settings = from_json(GatewaySettings, data["settings.json"])
    assert settings.uid == 10001 and settings.run is not None
    assert settings.run.command == ("true",) and settings.run.policy == "policy.toml"
    assert settings.network.web_ports == (80, 443, 8080)
    assert settings.network.topology is Topology.POD  # the gateway as the pod's sidecar
    assert v4_rules_of_the_gateway() in data["pod-rules.v4"]
    v4 = data["pod-rules.v4"]
    assert "-m owner --uid-owner 10001 -j RETURN" in v4
    assert f"-j REDIRECT --to-ports {DNS_PORT}" in v4
    assert f"--dports 80,443,8080 -j REDIRECT --to-ports {PROXY_PORT}" in v4
    assert "NFQUEUE --queue-num 0" in v4 and "queue-bypass" not in v4
    assert "-A CODERUN_POD -j DROP" in data["pod-rules.v6"]


def test_network_policies(home: Path, policy: Path) -> None:
    enforce = documents("--policy", str(policy), "--", "true")
    own, layer = kind(enforce, "NetworkPolicy")
    assert (
        own["metadata"]["name"] == "coderun-pod" and layer["metadata"]["name"] == "coderun-egress"
    )
    assert own["spec"]["policyTypes"] == ["Ingress", "Egress"] and "ingress" not in own["spec"]
    assert own["spec"]["podSelector"] == layer["spec"]["podSelector"]
    peers = [p for rule in own["spec"]["egress"] for p in rule.get("to", [])]
    assert all("ipBlock" not in p for p in peers)  # enforce: only the rules open the internet
    blocks = [p["ipBlock"]["cidr"] for rule in layer["spec"]["egress"] for p in rule["to"]
              if "ipBlock" in p]  # fmt: skip
    assert "198.51.100.0/24" in blocks
    ask = documents("--decision-service", "https://192.0.2.10:8443", "--decision-secret", "d",
                    "--", "true")  # fmt: skip
    egress = kind(ask, "NetworkPolicy")[0]["spec"]["egress"]
    assert {"to": [{"ipBlock": {"cidr": "192.0.2.10/32"}}],
            "ports": [{"protocol": "TCP", "port": 8443}]} in egress  # fmt: skip
    internet = [p["ipBlock"] for rule in egress for p in rule.get("to", []) if "ipBlock" in p
                and p["ipBlock"]["cidr"] == "0.0.0.0/0"]  # fmt: skip
    assert internet and {"169.254.0.0/16", "10.0.0.0/8"} <= set(internet[0]["except"])


def test_decision_service_and_labels(home: Path) -> None:
    docs = documents(
        "--decision-service",
        "https://decide.coderun.svc:8443",
        "--namespace",
        "ci",
        "--decision-secret",
        "fleet",
        "--label",
        "team=web",
        "--",
        "true",
    )
    run = from_json(GatewaySettings, kind(docs, "ConfigMap")[0]["data"]["settings.json"]).run
    assert run is not None and str(run.mode) == "ask"
    assert run.decision_service == "https://decide.coderun.svc:8443"
    assert set(run.labels) == {"team=web", "pod=coderun", "namespace=ci"}
    pod = kind(docs, "Pod")[0]
    assert pod["metadata"]["labels"]["team"] == "web"
    spec = pod_spec(docs)
    secret = [v for v in spec["volumes"] if "secret" in v][0]["secret"]
    assert secret["secretName"] == "fleet" and secret["defaultMode"] == 0o400
    by_name = containers(spec)
    prepare = by_name["coderun-prepare"]
    assert "/gateway-run/coderun-decision.json" in prepare["command"]
    assert prepare["securityContext"]["capabilities"] == {"drop": ["ALL"], "add": ["CHOWN"]}
    # Only coderun-prepare reads the Secret; the gateway finds its copy in its own /run.
    mounts = {c: [m["name"] for m in by_name[c]["volumeMounts"]] for c in by_name}
    assert [c for c, names in mounts.items() if "coderun-decision" in names] == ["coderun-prepare"]
    assert "coderun-gateway-run" in mounts["coderun-gateway"]
    assert "coderun-gateway-run" not in mounts["workload"]
    egress = kind(docs, "NetworkPolicy")[0]["spec"]["egress"]
    ns = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "coderun"}}}
    assert {"to": [ns], "ports": [{"protocol": "TCP", "port": 8443}]} in egress


def test_job_and_agent_sandbox(home: Path) -> None:
    job = kind(documents("--job", "--", "true"), "Job")[0]
    assert job["apiVersion"] == "batch/v1" and job["spec"]["backoffLimit"] == 0
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    docs = documents("--output", "agent-sandbox", "--name", "agent", "--", "true")
    sandbox, template = kind(docs, "Sandbox")[0], kind(docs, "SandboxTemplate")[0]
    assert sandbox["apiVersion"] == "agents.x-k8s.io/v1beta1"
    assert template["apiVersion"] == "extensions.agents.x-k8s.io/v1beta1"
    assert template["spec"]["networkPolicyManagement"] == "Unmanaged"
    assert sandbox["spec"]["podTemplate"] == template["spec"]["podTemplate"]
    labels = sandbox["spec"]["podTemplate"]["metadata"]["labels"]
    assert kind(docs, "NetworkPolicy")[0]["spec"]["podSelector"]["matchLabels"] == labels
    assert not kind(docs, "Pod")


def test_profile(home: Path, profile: Path) -> None:
    docs = documents("--profile", str(profile), "--", "-k", "fast")
    work = containers(pod_spec(docs))["workload"]
    assert work["image"] == "coderun-sandbox-python:latest"
    assert work["command"] == ["pytest", "-q", "-k", "fast"]
    assert work["workingDir"] == "/work" and work["securityContext"]["runAsUser"] == 2000
    assert work["resources"]["limits"]["memory"] == "1Gi"
    assert kind(docs, "Pod")[0]["metadata"]["name"] == "unit-tests"
    data = kind(docs, "ConfigMap")[0]["data"]
    assert [r.host for r in loads_policy(data["policy.toml"]).rules] == ["pypi.test"]
    run = from_json(GatewaySettings, data["settings.json"]).run
    assert run is not None and run.profile == "unit-tests"


BAD = {
    "unknown profile": (["--profile", "no-such.toml", "--", "x"], "no-such.toml"),
    "bad runtime class": (["--runtime-class", "GVisor_1", "--", "x"], "--runtime-class"),
    "empty command": ([], "COMMAND"),
    "empty command after --": (["--", ""], "COMMAND"),
    "bad namespace": (["--namespace", "Team_A", "--", "x"], "--namespace"),
    "long name": (["--name", "n" * 51, "--", "x"], "--name"),
    "profile and run options": (["--profile", "{profile}", "--image", "node", "--", "x"],
                                "--profile FILE and --image"),
    "job and agent-sandbox": (["--job", "--output", "agent-sandbox", "--", "x"], "--job"),
    "ask without a decision service": (["--mode", "ask", "--", "x"], "--decision-service"),
    "plain http": (["--decision-service", "http://decide.test", "--decision-secret", "d",
                    "--", "x"], "https://"),
    "no decision secret": (["--decision-service", "https://decide.test", "--", "x"],
                           "--decision-secret"),
    "a secret without a service": (["--decision-secret", "d", "--", "x"], "--decision-service"),
    "enforce with a decision service": (["--mode", "enforce", "--decision-service",
                                         "https://decide.test", "--decision-secret", "d",
                                         "--", "x"], "ask mode"),
    "bad label": (["--label", "no-value", "--", "x"], "label"),
    "root": (["--user", "root", "--", "x"], "--user"),
    "the gateway's uid": (["--user", "10001", "--", "x"], "gateway"),
    "bad web ports": (["--web-ports", "80,http", "--", "x"], "--web-ports"),
    "bad memory": (["--memory", "lots", "--", "x"], "--memory"),
    "unknown output": (["--output", "helm", "--", "x"], "--output"),
}  # fmt: skip


@pytest.mark.parametrize("case", BAD)
def test_bad_options_are_usage_errors(home: Path, profile: Path, case: str) -> None:
    args, said = BAD[case]
    result = render(*[a.replace("{profile}", str(profile)) for a in args])
    assert result.exit_code == 2, result.output
    assert said in result.stderr
    assert result.stdout == ""  # nothing half-written


@pytest.mark.parametrize(
    ("key", "value"),
    [("mounts", '[".:/work"]'), ("secret_files", '["~/.npmrc=registry.npm.test"]')],
)
def test_a_profile_with_host_things_is_refused(
    home: Path, tmp_path: Path, key: str, value: str
) -> None:
    path = tmp_path / "host.toml"
    path.write_text(f'image = "bash"\ncommand = ["ls"]\n{key} = {value}\n')
    result = render("--profile", str(path))
    assert result.exit_code == 2 and f"'{key}' needs this machine" in result.stderr


def test_a_profile_name_that_is_no_kubernetes_name(home: Path, tmp_path: Path) -> None:
    path = tmp_path / "tool.toml"
    path.write_text('name = "Unit_Tests"\nimage = "bash"\ncommand = ["ls"]\n')
    result = render("--profile", str(path))
    assert result.exit_code == 2 and "give --name" in result.stderr
    assert documents("--profile", str(path), "--name", "unit-tests")


def test_never_talks_to_docker(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import docker

    import sandbox.engine

    def refuse(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("coderun k8s render talked to Docker")

    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    monkeypatch.setattr(docker.DockerClient, "__init__", refuse)
    monkeypatch.setattr(docker, "from_env", refuse)
    monkeypatch.setattr(sandbox.engine, "docker_client", refuse)
    docs = documents("--image", "python", "--job", "--", "python3", "-V")
    assert kind(docs, "Job")


def test_the_prepare_step_lays_out_the_gateway_folders(tmp_path: Path) -> None:
    """coderun-prepare's script, run here as it runs in the pod (as its own uid here)."""
    data, run = tmp_path / "data", tmp_path / "run"
    data.mkdir()
    run.mkdir()
    (tmp_path / "policy.toml").write_text(POLICY)
    (tmp_path / "secret.json").write_text('{"token": "t", "ca": "pem"}')
    args = [str(data), "pod-1", str(tmp_path / "policy.toml"), str(os.getuid()),
            str(tmp_path / "secret.json"), str(run / "coderun-decision.json")]  # fmt: skip
    subprocess.run([sys.executable, "-c", PREPARE, *args], check=True, timeout=60)
    token = data / "api-token"
    assert len(token.read_text()) == 64 and stat.S_IMODE(token.stat().st_mode) == 0o600
    assert (data / "sessions" / "pod-1" / "policy.toml").read_text() == POLICY
    assert (data / "rules").is_dir()
    copied = run / "coderun-decision.json"
    assert json.loads(copied.read_text())["token"] == "t"
    assert stat.S_IMODE(copied.stat().st_mode) == 0o600
