"""One coderun session: networks, gateway, namespace holder and sandbox, and their end.

Topology (see docs/architecture.md): the sandbox shares the network namespace of a
trusted *holder* container, which re-addresses it as a /32 whose only route is the
gateway container, so every packet the sandbox sends (even to the host's bridge
address) crosses the gateway. The gateway reaches the outside through an egress
network. Everything is labelled with the session id and the owning process, so an
interrupted run's leftovers are found by ``coderun gc`` or the next run.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import docker.errors
from docker.models.containers import Container
from docker.models.networks import Network
from docker.models.volumes import Volume

from sandbox import injected, paths
from sandbox.gateway_code import gateway_volumes
from sandbox.sandbox_container import DEFAULT_USER
from snitch.core.grammar import GatewayState
from snitch.core.model import Mode
from snitch.core.settings import DEFAULT_MAX_PENDING

LABEL = "coderun.session"
OWNER_PID = "coderun.owner-pid"
OWNER_HOST = "coderun.owner-host"
ROLE = "coderun.role"
READY_TIMEOUT = 30.0

# Run in the holder (by exec, once the gateway's address is known).
HOLDER_SCRIPT = r"""
set -e
set -- $(ip -4 -o addr show dev eth0)
SANDBOX_IP=${4%/*}
ip addr flush dev eth0
ip addr add "$SANDBOX_IP/32" dev eth0
ip route add "$GATEWAY_IP" dev eth0
ip route add default via "$GATEWAY_IP" dev eth0 onlink
# Docker's embedded resolver listens inside this namespace: make it unreachable.
iptables -A OUTPUT -d 127.0.0.11 -j DROP
# Broadcast and multicast would reach the bridge (and the host) without a route.
iptables -A OUTPUT -o eth0 -m addrtype ! --dst-type UNICAST -j DROP
# The sandbox gets this namespace's resolv.conf (and hosts, hostname) from Docker, read-only:
# its only resolver is the gateway, and no host path shows in its mount table.
printf 'nameserver %s\noptions timeout:2 attempts:2\n' "$GATEWAY_IP" > /etc/resolv.conf
"""


class SessionError(RuntimeError):
    pass


@dataclass
class SessionConfig:
    command: list[str]
    image: str  # resolved image reference for the sandbox
    gateway_image: str
    image_name: str = "bash"  # as the user named it (for rule scopes and the record)
    mode: Mode = Mode.ENFORCE
    policy_file: Path | None = None
    policy_text: str | None = None  # rules of the run (a profile's), with policy_file's
    egress_network: str | None = None
    dns_upstream: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    volumes: list[str] = field(default_factory=list)  # HOST:CONTAINER[:ro]
    workdir: str | None = None
    script: Path | None = None
    profile: str | None = None
    tty: bool = False  # a pseudo-terminal for the sandbox (run -t)
    stdin: bool = False  # the sandbox reads our stdin (run -i)
    publish: list[str] = field(default_factory=list)  # -p [BIND:]HOSTPORT:PORT
    split: bool | None = None  # -t in ask mode in tmux: the dashboard in a split (None: ask)
    memory: str = "2g"  # and as much with swap: none
    pids: int = 1024
    user: str = DEFAULT_USER  # "root", "UID" or "UID:GID"
    cpus: float | None = None  # None: half of this machine's CPUs, at least one
    tmpfs_size: str = "1g"  # each writable place of the read-only root
    runtime: str | None = None  # e.g. "runsc" (gVisor); None: the engine's default
    ask_timeout: float = 60.0
    ask_default: str = "deny"
    max_pending: int = DEFAULT_MAX_PENDING  # ask mode: items waiting at once
    intercept_tls: bool = False
    upstream_ca: Path | None = None  # a CA the gateway trusts upstream (when intercepting)
    web_ports: str = "80,443"
    private_answers: str = "deny"  # may a name lead to private/CGNAT ranges? (addresses.py)


# Host environment passed to the gateway as is (snitch/gateway/main.py): CODERUN_KERNEL_CACHE
# "0" turns off the kernel verdict cache, CODERUN_PEEK "1" reads web flows in passing.
GATEWAY_SWITCHES = ("CODERUN_KERNEL_CACHE", "CODERUN_PEEK")


def log_limits_env(host_env: dict[str, str] | None = None) -> dict[str, str]:
    """The gateway's log limits from this user's environment: ``CODERUN_LOG_SESSION_MAX_MB``
    (a session log's size cap), ``CODERUN_LOG_RATE`` (lines a second per kind of line) and
    ``CODERUN_LOG_BURST``; "0" lifts a limit, unset keeps the gateway's default."""
    from snitch.core.loglimit import ENV_BURST, ENV_MAX_BYTES, ENV_RATE, LogLimits

    src = os.environ if host_env is None else host_env
    out: dict[str, str] = {}
    try:
        if src.get("CODERUN_LOG_SESSION_MAX_MB"):
            out[ENV_MAX_BYTES] = str(int(float(src["CODERUN_LOG_SESSION_MAX_MB"]) * 1024 * 1024))
        for var, key in (("CODERUN_LOG_RATE", ENV_RATE), ("CODERUN_LOG_BURST", ENV_BURST)):
            if src.get(var):
                out[key] = src[var]
        LogLimits.from_env(out)
    except ValueError as exc:
        raise SessionError(f"bad CODERUN_LOG_* setting: {exc}") from exc
    return out


def run_policy(config: SessionConfig) -> bytes | None:
    """The run's policy file for the gateway: ``--policy``'s rules and a profile's."""
    if config.policy_text is None:
        return config.policy_file.read_bytes() if config.policy_file is not None else None
    from snitch.core.policyfile import dump_policy, load_policy_file, loads_policy

    rules = loads_policy(config.policy_text, "<profile>").rules
    blocklist: list[str] = []
    if config.policy_file is not None:
        given = load_policy_file(config.policy_file)
        rules, blocklist = [*given.rules, *rules], given.blocklist
    return dump_policy(rules, blocklist).encode()


def _wait(cond: Any, what: str, timeout: float = READY_TIMEOUT, interval: float = 0.02) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = cond()
        if result:
            return result
        if time.monotonic() > deadline:
            raise SessionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


class Session:
    """One run's containers and networks. ``warm`` sessions are a pool's: their gateway
    and holder were started ahead of time (``start_standby``) and a run ``adopt``s them."""

    def __init__(
        self,
        client: docker.DockerClient,
        config: SessionConfig,
        warm_id: str | None = None,
        *,
        record: bool = True,
    ) -> None:
        self.client = client
        self.config = config
        self.id = warm_id or uuid.uuid4().hex[:12]
        self.dir = paths.sessions_dir() / self.id
        self.dir.mkdir(mode=paths.PRIVATE_DIR, exist_ok=warm_id is not None)
        self.warm = warm_id is not None  # adopting a pool's pair: record saved on claim
        self.labels = {
            LABEL: self.id,
            OWNER_PID: str(os.getpid()),
            OWNER_HOST: socket.gethostname(),
        }
        self.networks: list[Network] = []
        self.containers: list[Container] = []
        self.gateway: Container | None = None
        self.holder: Container | None = None
        self.sandbox: Container | None = None
        self.files_volume: Volume | None = None  # the script and CA bundle (injected.py)
        self.gateway_ip = ""
        self.sandbox_ip = ""
        self.record: dict[str, Any] = {
            "id": self.id,
            "command": config.command,
            "image": config.image_name,
            "mode": str(config.mode),
            "start": time.time(),
            "end": None,
            "exit": None,
        }
        if record and not self.warm:
            self.save_record()

    # -- record -----------------------------------------------------------------------------
    def save_record(self) -> None:
        paths.write_private(self.dir / "session.json", json.dumps(self.record, indent=1))

    @property
    def log_path(self) -> Path:
        return self.dir / "flows.jsonl"

    @property
    def api_socket(self) -> Path:
        return self.dir / "api.sock"

    # -- lifecycle --------------------------------------------------------------------------
    def role_labels(self, role: str) -> dict[str, str]:
        return {**self.labels, ROLE: role}

    def start(self) -> None:
        """Bring up networks, gateway and holder; create (not start) the sandbox."""
        if self.warm:
            self._start_adopted()
            return
        gateway_ready = self._start_pair(standby=False)
        _wait(gateway_ready, "the gateway")
        self._create_sandbox(f"coderun-{self.id}")

    def start_standby(self) -> None:
        """A pool's warm pair: networks, a gateway waiting for its claim, the holder."""
        self._start_pair(standby=True)
        _wait(self._gateway_state(lambda s: s.get("state") == GatewayState.STANDBY),
              "the gateway to stand by")  # fmt: skip

    def _start_adopted(self) -> None:
        """Claim a warm pair: find its containers, hand the gateway this run's settings,
        and create the sandbox while the gateway finishes starting."""
        selector = {"label": f"{LABEL}={self.id}"}
        for container in self.client.containers.list(filters=selector):
            role = container.labels.get(ROLE)
            if role == "gateway":
                self.gateway = container
            elif role == "holder":
                self.holder = container
        self.networks = self.client.networks.list(filters=selector)
        self.files_volume = next(iter(self.client.volumes.list(filters=selector)), None)
        if self.gateway is None or self.holder is None:
            raise SessionError(f"warm session {self.id} is gone")
        inner = f"coderun-{self.id}-net"
        self.gateway_ip = self.gateway.attrs["NetworkSettings"]["Networks"][inner]["IPAddress"]
        self.sandbox_ip = self.holder.attrs["NetworkSettings"]["Networks"][inner]["IPAddress"]
        self.containers = [self.gateway, self.holder]
        paths.write_private(self.dir / "claim.json", json.dumps(self._run_env()))
        self.save_record()
        self._create_sandbox(f"coderun-{self.id}")
        _wait(self._ready_check(), "the gateway")

    def _start_pair(self, standby: bool) -> Callable[[], bool]:
        c = self.client
        name = f"coderun-{self.id}"
        if self.config.egress_network:
            try:
                egress = c.networks.get(self.config.egress_network)
            except docker.errors.NotFound as exc:
                raise SessionError(f"no Docker network {self.config.egress_network!r}") from exc
        else:
            egress = c.networks.create(
                f"{name}-egress", driver="bridge", labels=self.role_labels("egress")
            )
            self.networks.append(egress)
        inner = c.networks.create(
            f"{name}-net",
            driver="bridge",
            labels=self.role_labels("sandbox-net"),
            options={"com.docker.network.bridge.enable_ip_masquerade": "false"},
        )
        self.networks.append(inner)
        self.files_volume = injected.create_volume(c, f"{name}-files", self.role_labels("files"))
        # Gateway and holder start side by side (Docker's API calls are slow one by one);
        # the holder's network is set up once the gateway's address is known.
        with ThreadPoolExecutor(max_workers=2) as pool:
            holder_started = pool.submit(self._start_holder, name, inner)
            gateway_ready = self._start_gateway(name, egress, inner, standby)
            holder_started.result()
        self._setup_holder()
        return gateway_ready

    def _run_env(self) -> dict[str, str]:
        """The gateway settings that belong to this run (a warm gateway gets them last)."""
        env = {
            "CODERUN_COMMAND": json.dumps(self.config.command),
            "CODERUN_ASK_TIMEOUT": str(self.config.ask_timeout),
            "CODERUN_ASK_DEFAULT": self.config.ask_default,
            "CODERUN_MAX_PENDING": str(self.config.max_pending),
            "CODERUN_MODE": str(self.config.mode),
            "CODERUN_IMAGE": self.config.image_name,
            "CODERUN_PRIVATE_ANSWERS": self.config.private_answers,
        }
        env.update(log_limits_env())
        if self.config.profile:
            env["CODERUN_PROFILE"] = self.config.profile
        policy = run_policy(self.config)
        if policy is not None:
            paths.write_private(self.dir / "policy.toml", policy)
            env["CODERUN_POLICY"] = f"/data/sessions/{self.id}/policy.toml"
        return env

    def _start_gateway(
        self, name: str, egress: Network, inner: Network, standby: bool = False
    ) -> Callable[[], bool]:
        egress.reload()
        ipam = (egress.attrs.get("IPAM", {}).get("Config") or [{}])[0]
        if not ipam.get("Subnet"):
            raise SessionError(f"egress network {egress.name} has no IPv4 subnet")
        from sandbox.host_networks import ENV, host_networks

        env = {
            "CODERUN_EGRESS_SUBNET": ipam["Subnet"],
            "CODERUN_EGRESS_GATEWAY": ipam.get("Gateway", ""),
            ENV: ",".join(host_networks(self.client, egress, bool(self.config.egress_network))),
            "CODERUN_SESSION": self.id,
            "CODERUN_DATA": "/data",
            "HOST_UID": str(os.getuid()),
            "HOST_GID": str(os.getgid()),
            **({"CODERUN_STANDBY": "1"} if standby else self._run_env()),
        }
        env["CODERUN_WEB_PORTS"] = self.config.web_ports
        for switch in GATEWAY_SWITCHES:  # the gateway's fast paths, off for comparisons
            if os.environ.get(switch):
                env[switch] = os.environ[switch]
        if self.config.intercept_tls:
            env["CODERUN_INTERCEPT_TLS"] = "1"
        if self.config.upstream_ca is not None:
            paths.write_private(self.dir / "upstream-ca.pem", self.config.upstream_ca.read_bytes())
            env["CODERUN_UPSTREAM_CA"] = f"/data/sessions/{self.id}/upstream-ca.pem"
        if self.config.dns_upstream:
            env["CODERUN_DNS_UPSTREAM"] = self.config.dns_upstream
        self.gateway = self.client.containers.run(
            self.config.gateway_image,
            name=f"{name}-gw",
            detach=True,
            network=egress.name,
            labels=self.role_labels("gateway"),
            environment=env,
            cap_add=["NET_ADMIN"],
            init=True,
            sysctls={
                "net.ipv4.ip_forward": "1",
                "net.ipv4.conf.all.send_redirects": "0",
                "net.ipv4.conf.default.send_redirects": "0",
                "net.ipv6.conf.all.disable_ipv6": "1",
                "net.ipv6.conf.default.disable_ipv6": "1",
            },
            volumes={
                **gateway_volumes(),
                **self._gateway_data_mounts(),
            },
        )
        self.containers.append(self.gateway)
        inner.connect(self.gateway)
        self.gateway.reload()
        self.gateway_ip = self.gateway.attrs["NetworkSettings"]["Networks"][inner.name]["IPAddress"]
        return self._ready_check()

    def _gateway_data_mounts(self) -> dict[str, dict[str, str]]:
        """What the gateway gets of the data dir: its own session folder and the rule
        store (read-write), the API token (read-only) and, only when it intercepts TLS,
        the CA. No other session, not the pool."""
        mounts = {
            str(self.dir): {"bind": f"/data/sessions/{self.id}", "mode": "rw"},
            str(paths.rules_dir()): {"bind": "/data/rules", "mode": "rw"},
            str(paths.api_token_path()): {"bind": "/data/api-token", "mode": "ro"},
        }
        if self.config.intercept_tls:
            mounts[str(paths.ca_dir())] = {"bind": "/data/ca", "mode": "rw"}
        return mounts

    def _ready_check(self) -> Callable[[], bool]:
        # With web ports, wait for mitmproxy too (it loads after "ready"): the sandbox's
        # first request must already be logged and path rules apply.
        web = bool(self.config.web_ports.strip(" ,"))
        return self._gateway_state(
            lambda s: s.get("state") == GatewayState.READY and (bool(s.get("mitm")) or not web)
        )

    def _gateway_state(self, reached: Callable[[dict[str, Any]], bool]) -> Callable[[], bool]:
        """A condition for ``_wait``: the gateway's ``gateway.json`` has ``reached`` the
        state wanted (and Docker is asked now and then whether the gateway exited)."""
        state_file = self.dir / "gateway.json"
        checks = 0

        def check() -> bool:
            nonlocal checks
            checks += 1
            with contextlib.suppress(OSError, ValueError):
                if reached(json.loads(state_file.read_text())):
                    return True
            return checks % 10 == 0 and self._gateway_failed()

        return check

    def _gateway_failed(self) -> bool:
        """Raise with the gateway's last lines if its container exited (else False)."""
        assert self.gateway is not None
        self.gateway.reload()
        if self.gateway.status == "exited":
            logs = self.gateway.logs(tail=20).decode(errors="replace")
            raise SessionError(f"the gateway failed to start:\n{logs}")
        return False

    def _start_holder(self, name: str, inner: Network) -> None:
        holder = self.client.containers.create(
            self.config.gateway_image,
            name=f"{name}-ns",
            entrypoint=["sleep", "infinity"],
            network=inner.name,
            labels=self.role_labels("holder"),
            cap_add=["NET_ADMIN"],
            volumes=injected.holder_mount(self.files_volume) if self.files_volume else None,
            sysctls={
                "net.ipv6.conf.all.disable_ipv6": "1",
                "net.ipv6.conf.default.disable_ipv6": "1",
                # A held SYN must survive a person's decision: retry for ~2 minutes.
                "net.ipv4.tcp_syn_retries": "7",
            },
        )
        self.containers.append(holder)
        holder.start()
        holder.reload()
        self.sandbox_ip = holder.attrs["NetworkSettings"]["Networks"][inner.name]["IPAddress"]
        self.holder = holder

    def _setup_holder(self) -> None:
        """Re-address the holder's namespace: a /32 whose only route is the gateway."""
        assert self.holder is not None
        if not self.gateway_ip:  # it exited before it was on the sandbox network
            self._gateway_failed()
            raise SessionError("the gateway has no address on the sandbox network")
        code, out = self.holder.exec_run(["sh", "-c", HOLDER_SCRIPT],
                                         environment={"GATEWAY_IP": self.gateway_ip})  # fmt: skip
        if code != 0:
            raise SessionError(f"setting up the sandbox network failed: {out.decode().strip()}")

    def _create_sandbox(self, name: str) -> None:
        from sandbox.sandbox_container import create_sandbox

        self.sandbox = create_sandbox(self, name)
        self.containers.append(self.sandbox)

    def gateway_alive(self) -> bool:
        if self.gateway is None:
            return False
        try:
            self.gateway.reload()
        except docker.errors.NotFound:
            return False
        return bool(self.gateway.status == "running")

    def finish(self, exit_code: int | None, error: str | None = None) -> None:
        self.record["end"] = time.time()
        self.record["exit"] = exit_code
        if error:
            self.record["error"] = error
        self.save_record()

    def close(self) -> None:
        """Remove every container and network of this session (idempotent)."""
        from sandbox.cleanup import remove_session

        if self.warm:
            from sandbox.pool import hand_back

            if hand_back(self):  # the pool's daemon removes the pair
                self.containers.clear()
                self.networks.clear()
                return
        elif self.gateway is not None and self.gateway_alive():
            with contextlib.suppress(docker.errors.APIError):  # let the gateway flush its log
                self.gateway.stop(timeout=3)
        remove_session(self.client, self.id)
        self.containers.clear()
        self.networks.clear()
