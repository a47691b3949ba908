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
import os
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import docker
import docker.errors
from docker.models.containers import Container
from docker.models.networks import Network
from docker.models.volumes import Volume

from sandbox import injected, paths
from sandbox.attribution.service import AttributionService
from sandbox.cleanup import remove_session
from sandbox.config import SessionConfig, SessionError
from sandbox.egress import shared_egress
from sandbox.gateway_container import create_gateway, cut_off, data_mounts, hand_over
from sandbox.gateway_ready import raise_if_exited, running, state_check, wait_for
from sandbox.holder import address, create_holder, set_up
from sandbox.host_networks import host_networks
from sandbox.host_services import start_attribution, start_shares
from sandbox.labels import LABEL, ROLE, owner_labels
from sandbox.sandbox_container import ca_cert, create_sandbox
from snitch.core.atomic import write_atomic
from snitch.core.grammar import GatewayState
from snitch.core.session_dir import (
    POLICY,
    UPSTREAM_CA,
    GatewayStatus,
    SessionDir,
    SessionRecord,
)
from snitch.core.settings import (
    GatewaySettings,
    RunSettings,
    Topology,
    fast_paths_from_env,
)

if TYPE_CHECKING:  # start-up time: the --share daemons' code loads only for a share
    from sandbox.shares.mounts import SessionShares


def run_policy(config: SessionConfig) -> bytes | None:
    """The run's policy file for the gateway: ``--policy``'s rules and a profile's."""
    if config.policy_text is None:
        return config.policy_file.read_bytes() if config.policy_file is not None else None
    # Start-up time: the policy file's parser (tomllib, the policy) loads only for a profile.
    from snitch.core.policyfile import dump_policy, load_policy_file, loads_policy

    rules = loads_policy(config.policy_text, "<profile>").rules
    blocklist: list[str] = []
    if config.policy_file is not None:
        given = load_policy_file(config.policy_file)
        rules, blocklist = [*given.rules, *rules], given.blocklist
    return dump_policy(rules, blocklist).encode()


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
        self.folder = SessionDir.of(paths.sessions_dir(), self.id)
        self.dir = self.folder.path
        self.dir.mkdir(mode=paths.PRIVATE_DIR, exist_ok=warm_id is not None)
        self.warm = warm_id is not None  # adopting a pool's pair: record saved on claim
        self.labels = owner_labels(self.id)
        # A pool's pair goes back to its daemon when the run ends (set by pool.claim):
        # True when the daemon took it, False to remove it here.
        self.hand_back: Callable[[Session], bool] | None = None
        self.networks: list[Network] = []
        self.containers: list[Container] = []
        self.gateway: Container | None = None
        self.gateway_lost = False  # found not running mid-run (gateway_alive)
        self.holder: Container | None = None
        self.sandbox: Container | None = None
        self.files_volume: Volume | None = None  # the script and CA bundle (injected.py)
        self.shares: SessionShares | None = None  # --share daemons and mounts
        self.attribution: AttributionService | None = None  # which process made a flow
        self.gateway_ip = ""
        self.sandbox_ip = ""
        self.record = SessionRecord(self.id, list(config.run.command), config.run.image,
                                    str(config.run.mode), start=time.time())  # fmt: skip
        if record and not self.warm:
            self.save_record()

    # -- record -----------------------------------------------------------------------------
    def save_record(self) -> None:
        self.folder.write_record(self.record)

    @property
    def log_path(self) -> Path:
        return self.folder.log_path

    @property
    def api_socket(self) -> Path:
        return self.folder.api_socket

    # -- lifecycle --------------------------------------------------------------------------
    def role_labels(self, role: str) -> dict[str, str]:
        return {**self.labels, ROLE: role}

    def start(self) -> None:
        """Bring up networks, gateway and holder; create (not start) the sandbox."""
        if self.warm:
            self._start_adopted()
            return
        gateway_ready = self._start_pair(standby=False)
        if self.config.uses_ca and not ca_cert().exists():
            # The sandbox's CA bundle needs the interception CA, which the first gateway
            # that intercepts makes: only then is the sandbox created.
            wait_for(gateway_ready, "the gateway")
            wait_for(ca_cert().exists, "the interception CA")
            self._create_sandbox(f"coderun-{self.id}")
        else:
            self._create_sandbox(f"coderun-{self.id}")  # while the gateway gets ready
            wait_for(gateway_ready, "the gateway")
        self._put_secrets()

    def _put_secrets(self) -> None:
        if self.config.decision_credentials or self.config.secret_values:
            assert self.gateway is not None
            hand_over(self.gateway, self.config)

    def start_standby(self) -> None:
        """A pool's warm pair: networks, a gateway waiting for its claim, the holder."""
        self._start_pair(standby=True)
        wait_for(self._gateway_state(lambda s: s.state == GatewayState.STANDBY),
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
        self.folder.write_claim(self.run_settings())
        self.save_record()
        self._create_sandbox(f"coderun-{self.id}")
        wait_for(self.ready_check(), "the gateway")

    def _egress_network(self, name: str, shared: bool) -> Network:
        """The run's named egress network, else the shared one (routed: sandbox/egress.py)
        or, for a pod, one of its own."""
        named = self.config.network.egress_network
        if named:
            try:
                return self.client.networks.get(named)
            except docker.errors.NotFound as exc:
                raise SessionError(f"no Docker network {named!r}") from exc
        if shared:
            return shared_egress(self.client)
        egress = self.client.networks.create(
            f"{name}-egress", driver="bridge", labels=self.role_labels("egress")
        )
        self.networks.append(egress)
        return egress

    def _start_pair(self, standby: bool) -> Callable[[], bool]:
        c = self.client
        name = f"coderun-{self.id}"
        if self.config.network.topology is Topology.POD:  # one namespace (sandbox/pod.py)
            from sandbox.pod import start_pod

            egress = self._egress_network(name, shared=False)
            self.files_volume = injected.create_volume(c, f"{name}-files",
                                                       self.role_labels("files"))  # fmt: skip
            return start_pod(self, egress, standby)
        # Docker's calls are slow one by one: the sandbox network, the files volume and
        # the holder on one side, the egress network and the gateway on the other, until
        # the gateway joins the sandbox network (before it starts: it starts with both).
        # Whatever a failure leaves half made is labelled: close() removes it.
        with ThreadPoolExecutor(max_workers=3) as pool:
            inner = pool.submit(self._create_inner, name)
            volume = pool.submit(injected.create_volume, c, f"{name}-files",
                                 self.role_labels("files"))  # fmt: skip
            holder_started = pool.submit(self._start_holder, name, inner, volume)
            egress = self._egress_network(name, shared=True)
            gateway_ready = self._start_gateway(name, egress, inner, standby)
            holder_started.result()
        self._setup_holder()
        return gateway_ready

    def _create_inner(self, name: str) -> Network:
        inner = self.client.networks.create(
            f"{name}-net",
            driver="bridge",
            labels=self.role_labels("sandbox-net"),
            options={"com.docker.network.bridge.enable_ip_masquerade": "false"},
        )
        self.networks.append(inner)
        return inner

    def run_settings(self) -> RunSettings:
        """The gateway settings that belong to this run (a warm gateway gets them last)."""
        policy = run_policy(self.config)
        if policy is None:
            return self.config.run
        write_atomic(self.folder.file(POLICY), policy)
        return replace(self.config.run, policy=POLICY)

    def gateway_settings(self, egress: Network, standby: bool) -> GatewaySettings:
        """Everything the gateway starts with (a warm one: all but the run)."""
        if not (egress.attrs.get("IPAM") or {}).get("Config"):  # made or got: read already
            egress.reload()
        ipam = (egress.attrs.get("IPAM", {}).get("Config") or [{}])[0]
        if not ipam.get("Subnet"):
            raise SessionError(f"egress network {egress.name} has no IPv4 subnet")
        upstream_ca = None
        if self.config.upstream_ca is not None:
            write_atomic(self.folder.file(UPSTREAM_CA), self.config.upstream_ca.read_bytes())
            upstream_ca = UPSTREAM_CA
        named = bool(self.config.network.egress_network)
        kernel_cache, peek = fast_paths_from_env(os.environ)  # benchmarks' switches
        return GatewaySettings(
            session=self.id, egress_subnet=ipam["Subnet"],
            egress_gateway=ipam.get("Gateway") or None, network=self.config.network,
            run=None if standby else self.run_settings(),
            host_networks=tuple(host_networks(self.client, egress, named)),
            upstream_ca=upstream_ca, uid=os.getuid(), gid=os.getgid(),
            kernel_cache=kernel_cache, peek=peek,
        )  # fmt: skip

    def _start_gateway(
        self, name: str, egress: Network, inner: Future[Network], standby: bool = False
    ) -> Callable[[], bool]:
        settings = self.gateway_settings(egress, standby)
        self.gateway = create_gateway(self.client, self.config.network.gateway_image,
                                      f"{name}-gw", egress.name, self.role_labels("gateway"),
                                      settings, self.gateway_data_mounts())  # fmt: skip
        self.containers.append(self.gateway)
        sandbox_net = inner.result()
        sandbox_net.connect(self.gateway)
        self.gateway.start()
        self.gateway.reload()
        networks = self.gateway.attrs["NetworkSettings"]["Networks"]
        self.gateway_ip = networks[sandbox_net.name]["IPAddress"]
        return self.ready_check()

    def gateway_data_mounts(self) -> dict[str, dict[str, str]]:
        return data_mounts(self.dir, self.id, self.config.uses_ca)

    def ready_check(self) -> Callable[[], bool]:
        # With web ports, wait for mitmproxy too (it loads after "ready"): the sandbox's
        # first request must already be logged and path rules apply. A gateway that reads
        # web flows in passing (peek) needs it for few flows, which wait for it, parked.
        web = bool(self.config.network.web_ports)
        return self._gateway_state(
            lambda s: s.state == GatewayState.READY and (s.mitm or s.peek or not web)
        )

    def _gateway_state(self, reached: Callable[[GatewayStatus], bool]) -> Callable[[], bool]:
        assert self.gateway is not None
        return state_check(self.folder, self.gateway, reached)

    def _start_holder(self, name: str, inner: Future[Network], volume: Future[Volume]) -> None:
        sandbox_net = inner.result()
        self.files_volume = volume.result()
        holder = create_holder(self.client, self.config.network.gateway_image, f"{name}-ns",
                               sandbox_net.name, self.role_labels("holder"),
                               self.files_volume)  # fmt: skip
        self.containers.append(holder)
        holder.start()
        self.sandbox_ip = address(holder, sandbox_net.name)
        self.holder = holder

    def _setup_holder(self) -> None:
        assert self.holder is not None
        if not self.gateway_ip:  # it exited before it was on the sandbox network
            assert self.gateway is not None
            raise_if_exited(self.gateway)
            raise SessionError("the gateway has no address on the sandbox network")
        set_up(self.holder, self.gateway_ip)

    def _create_sandbox(self, name: str) -> None:
        assert self.holder is not None
        config = self.config
        if config.shares:  # mounted before the sandbox exists: its binds need them
            self.shares = start_shares(config, self.folder, self.id)
            config = replace(config, volumes=[*config.volumes, *self.shares.volume_specs()])
        self.sandbox = create_sandbox(self.client, config, self.holder, self.files_volume,
                                      self.role_labels, name)  # fmt: skip
        self.containers.append(self.sandbox)
        self.attribution = start_attribution(self.client, self.folder, self.sandbox)

    def sandbox_started(self) -> None:
        """The sandbox runs: attribution learns its init pid now, not at the first flow."""
        if self.attribution is not None:
            self.attribution.attribution.finder()

    def gateway_alive(self) -> bool:
        alive = running(self.gateway)
        self.gateway_lost = self.gateway_lost or not alive
        return alive

    def finish(self, exit_code: int | None, error: str | None = None) -> None:
        self.record.end = time.time()
        self.record.exit = exit_code
        if error:
            self.record.error = error
        self.save_record()

    def close(self) -> None:
        """Remove every container and network of this session (idempotent)."""
        attribution, self.attribution = self.attribution, None
        with ThreadPoolExecutor(max_workers=1) as pool:
            # Its server notices the stop within a poll: meanwhile, the containers go.
            stopped = pool.submit(attribution.stop) if attribution is not None else None
            try:
                self._close_containers()
            finally:
                if stopped is not None:
                    stopped.result()
                if self.shares is not None:  # after the sandbox: it held the mounts
                    self.shares.stop()

    def _close_containers(self) -> None:
        if self.hand_back is not None:
            if self.hand_back(self):  # the pool's daemon removes the pair
                self.containers.clear()
                self.networks.clear()
                return
            stop = None
        else:
            stop = self._stop_gateway
        remove_session(self.client, self.id, stop_gateway=stop)
        self.containers.clear()
        self.networks.clear()

    def _stop_gateway(self, gateway: Container) -> None:
        """Let the gateway flush its log (SIGTERM; it is removed once it exited). A gateway
        found not running (paused: hung) is first cut off its networks: the stop resumes
        it, and it runs for a moment before its init passes the signal on, releasing the
        packets it held meanwhile (tests/e2e/test_failclosed.py, the pause case)."""
        with contextlib.suppress(docker.errors.APIError):  # gone or exited already
            if self.gateway_lost:
                gateway.reload()
                if gateway.status == "paused":
                    cut_off(self.client, gateway)
            gateway.stop(timeout=3)
