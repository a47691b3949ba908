"""What one ``coderun k8s render`` is made of, checked whole before anything is written.

A bad value is a ``SpecError`` naming the option and what is wrong; the command line
turns it into a usage error (exit 2).
"""

from __future__ import annotations

import enum
import ipaddress
import re
from dataclasses import dataclass, field

from snitch.core.fleetwire import parse_url
from snitch.core.model import Mode, Rule
from snitch.core.settings import NetworkShape, RunSettings

# RFC 1123 labels: names of pods, namespaces, ConfigMaps, RuntimeClasses ...
DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
MAX_NAME = 50  # room for the suffixes of the objects made from it (NAME-egress, NAME-rules)
GATEWAY_UID = 10001  # the gateway sidecar's uid: exempt from the pod's rules
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
SIZE = re.compile(r"([1-9][0-9]*)([kmgKMG]?)")
DECISION_KEY = "coderun-decision.json"  # the Secret's key: {"token": ..., "ca": PEM}


class SpecError(ValueError):
    """A render that cannot be made: ``option`` is the flag to blame."""

    def __init__(self, option: str, message: str) -> None:
        super().__init__(f"{option}: {message}")
        self.option = option
        self.message = message


class Output(enum.StrEnum):
    """``--output``: plain Kubernetes objects, or kubernetes-sigs agent-sandbox ones."""

    KUBERNETES = "kubernetes"
    AGENT_SANDBOX = "agent-sandbox"


@dataclass(frozen=True)
class DecisionService:
    """``--decision-service https://HOST[:PORT]`` (TLS only) and ``--decision-secret``:
    the Secret that holds the gateway's credentials for it (``DECISION_KEY``)."""

    url: str
    host: str
    port: int
    secret: str

    @classmethod
    def parse(cls, url: str, secret: str | None) -> DecisionService:
        try:
            host, port = parse_url(url)
        except ValueError as exc:
            raise SpecError("--decision-service", str(exc)) from None
        if secret is None:
            raise SpecError(
                "--decision-service",
                "needs --decision-secret NAME (the Secret "
                f"with the service's token and certificate as {DECISION_KEY})",
            )
        _label("--decision-secret", secret, 253)
        return cls(url, host, port, secret)

    @property
    def address(self) -> str | None:
        """The host if it is an IP address (a NetworkPolicy can name only those)."""
        try:
            return str(ipaddress.ip_address(self.host))
        except ValueError:
            return None

    @property
    def namespace(self) -> str | None:
        """The namespace of a cluster service name (``SVC.NS.svc[.cluster.local]``)."""
        labels = self.host.split(".")
        if len(labels) >= 3 and labels[2] == "svc" and DNS_LABEL.fullmatch(labels[1]):
            return labels[1]
        return None


@dataclass(frozen=True)
class Workload:
    """The sandboxed container: image, command, user and limits."""

    image: str
    command: tuple[str, ...]
    uid: int = 1000
    gid: int = 1000
    env: tuple[tuple[str, str], ...] = ()
    workdir: str | None = None
    cpus: float | None = None
    memory: str = "2g"
    tmpfs_size: str = "1g"


@dataclass(frozen=True)
class RenderSpec:
    """Everything a render needs; ``__post_init__`` checks it."""

    name: str
    workload: Workload
    gateway_image: str
    network: NetworkShape = NetworkShape()
    run: RunSettings = RunSettings()
    rules: tuple[Rule, ...] = ()
    namespace: str | None = None
    job: bool = False
    output: Output = Output.KUBERNETES
    runtime_class: str | None = None
    decision_service: DecisionService | None = None
    gateway_uid: int = GATEWAY_UID
    resolutions: dict[str, tuple[str, ...]] = field(default_factory=dict)
    pod_labels: tuple[tuple[str, str], ...] = ()  # --label KEY=VALUE: on the pod too

    def __post_init__(self) -> None:
        _label("--name", self.name, MAX_NAME)
        if self.namespace is not None:
            _label("--namespace", self.namespace, 63)
        if self.runtime_class is not None:
            _label("--runtime-class", self.runtime_class, 63)
        w = self.workload
        if not w.command or not w.command[0]:
            raise SpecError("COMMAND", "empty: give the command after --")
        if w.uid == 0:
            raise SpecError("--user", "root: the workload runs as a non-root uid")
        if w.uid == self.gateway_uid:
            raise SpecError("--user", f"uid {w.uid} is the gateway's (its flows are exempt)")
        if self.gateway_uid == 0:
            raise SpecError("--gateway-uid", "0: the gateway runs as a non-root uid")
        for key, _ in w.env:
            if not ENV_NAME.fullmatch(key):
                raise SpecError("-e", f"{key!r}: names are [A-Za-z_][A-Za-z0-9_]*")
        if w.workdir is not None and not w.workdir.startswith("/"):
            raise SpecError("-w", f"{w.workdir!r}: an absolute path in the container")
        for flag, size in (("--memory", w.memory), ("--tmpfs-size", w.tmpfs_size)):
            if not SIZE.fullmatch(size):
                raise SpecError(flag, f"{size!r}: a size like 512m or 2g")
        if self.job and self.output is Output.AGENT_SANDBOX:
            raise SpecError("--job", "an agent-sandbox Sandbox is no Job: drop --job or "
                            "--output agent-sandbox")  # fmt: skip
        if self.run.mode is Mode.ASK and self.decision_service is None:
            raise SpecError("--mode", "ask: nobody answers in a cluster without "
                            "--decision-service (or use --mode enforce)")  # fmt: skip

    @property
    def selector(self) -> dict[str, str]:
        """The labels that select this render's pod (its policies' podSelector)."""
        return {"app.kubernetes.io/name": "coderun", "app.kubernetes.io/instance": self.name}

    @property
    def labels(self) -> dict[str, str]:
        """The labels of the pod (and of every object made for it): ``--label`` ones too."""
        return {**dict(self.pod_labels), **self.selector}


def _label(option: str, value: str, limit: int) -> None:
    if not DNS_LABEL.fullmatch(value) or len(value) > limit:
        raise SpecError(option, f"{value!r}: lower-case letters, digits and '-', starting "
                        f"and ending with a letter or digit, at most {limit}")  # fmt: skip


def quantity(size: str) -> str:
    """``2g`` (Docker's way) as a Kubernetes quantity: ``2Gi``."""
    found = SIZE.fullmatch(size)
    if not found:
        raise SpecError("--memory", f"{size!r}: a size like 512m or 2g")
    number, unit = found.groups()
    return number + {"": "", "k": "Ki", "m": "Mi", "g": "Gi"}[unit.lower()]


def cpu_quantity(cpus: float) -> str:
    """CPUs as millicores: ``0.5`` -> ``500m``."""
    return f"{max(1, round(cpus * 1000))}m"
