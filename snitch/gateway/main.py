"""The gateway appliance's entry point (``python3 -m snitch.gateway`` in its container).

The host starts the container with its settings in one environment variable,
``CODERUN_SETTINGS``: a ``GatewaySettings`` document (snitch/core/settings.py) with its
session (its files live in ``<data>/sessions/<id>/``: snitch/core/session_dir.py), where
the host mounts what the gateway gets of its data dir (that folder, the rule store
``rules/rules.db``, the API token and, when intercepting, ``ca/``), the egress network,
the host's networks (a DNS answer never leads there: snitch/gateway/addresses.py), the
owner of the files it writes (all private: umask 077), the network shape (DNS upstream,
web ports, interception) and the run (mode, policy, profile, image, ask deadlines, max
pending, private answers, log limits, command), and its fast paths (the kernel verdict
cache, on with the host's ``CODERUN_KERNEL_CACHE=1``; reading web flows in passing, on
unless ``CODERUN_PEEK=0``).

A warm gateway of ``coderun pool`` starts without a run: it sets up the network and
mitmproxy, reports ``standby`` and waits for ``claim.json`` in its session folder, the
run's ``RunSettings``, applied before any packet is judged.

The control API listens on ``sessions/<id>/api.sock`` (token: ``<data>/api-token``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import logging
import os
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from snitch.core.apitypes import SessionInfo
from snitch.core.grammar import GatewayState
from snitch.core.session_dir import FILES_LOG, GatewayStatus, SessionDir
from snitch.core.settings import GatewaySettings, PrivateAnswers, RunSettings, Topology
from snitch.gateway import netfilter, podrules
from snitch.gateway.addresses import ProtectedAddresses, networks
from snitch.gateway.api import ControlApi
from snitch.gateway.asker import Asker
from snitch.gateway.attribution import Attributor
from snitch.gateway.conntrack import Conntrack
from snitch.gateway.dns import DnsForwarder
from snitch.gateway.events import EventBus
from snitch.gateway.fakeip import FakeIPs
from snitch.gateway.fastpaths import FastPaths
from snitch.gateway.filetail import FileTail
from snitch.gateway.fleetlink import FleetLink
from snitch.gateway.flowgate import FlowGate
from snitch.gateway.flowlog import LogWriter
from snitch.gateway.mitm import PROXY_PORT
from snitch.gateway.ports import Ports

if TYPE_CHECKING:
    from snitch.gateway.mitmproc import MitmProcess
from snitch.core.logentry import EntryKind, LogEntry
from snitch.core.model import Mode, Rule
from snitch.gateway.names import NameTable
from snitch.gateway.queue import PacketQueue
from snitch.gateway.rebind import RebindGuard
from snitch.gateway.revocation import Revoker
from snitch.gateway.rulebook import RuleBook

log = logging.getLogger("snitch.gateway")
STANDBY_POLL_SECONDS = 0.02  # how often a warm gateway looks for its claim (a stat())
UNUSED_CA_DIR = Path("/tmp/coderun-mitm")  # mitmproxy's CA when it does not intercept


def resolv_conf_upstream() -> str:
    for line in Path("/etc/resolv.conf").read_text().splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "nameserver":
            return parts[1]
    raise RuntimeError("no upstream resolver: give the gateway a DNS upstream")


class Gateway:
    def __init__(self, settings: GatewaySettings) -> None:
        self.settings = settings
        self.session = settings.session
        self.data = Path(settings.data)
        self.folder = SessionDir.of(self.data / "sessions", self.session)
        self.folder.path.mkdir(parents=True, exist_ok=True)
        net = settings.network
        self.upstream = net.dns_upstream or resolv_conf_upstream()
        self.egress_subnet = settings.egress_subnet
        self.egress_gateway = settings.egress_gateway
        self.uid = settings.uid
        self.gid = settings.gid
        self.standby = settings.standby
        self.bus = EventBus()
        self.names = NameTable()
        self.writer = LogWriter(self.folder.log_path, self.uid, self.gid,
                                (settings.run or RunSettings()).log_limits,
                                self.session)  # fmt: skip
        self.bus.subscribe(self.writer.on_event)
        # The store's rules and blocklist load once; configure() sets the run's part.
        self.rules = RuleBook(self.data / "rules" / "rules.db", [], Mode.ENFORCE, self.session)
        self.gate = FlowGate(self.rules, self.names, self.bus, self.session)
        self.gate.revoker = Revoker(self.rules, Conntrack(), self.gate.log_flow)
        self.dns = DnsForwarder(self.rules, self.names, self.bus, self.upstream, self.session)
        self.gate.resolve = self.dns.lookup
        self.gate.attributor = self.dns.attributor = Attributor(self.folder.attribution_socket)
        self.guard = self.gate.guard = self.dns.guard = RebindGuard(self.rules)
        self.own: list[str] = []  # the gateway's addresses and the sandbox network
        self.host_hops: list[str] = []  # its default route's next hop: the host
        self.private = PrivateAnswers.DENY
        self.asker: Asker | None = None
        self.started = time.time()
        self.sandbox_ip = ""
        self.api = ControlApi(
            self.folder.api_socket,
            (self.data / "api-token").read_text().strip(),
            self.bus,
            self.rules,
            self.asker,
            self.info,
            self.uid,
            self.gid,
        )
        self.ports = Ports(self.bus, self.session, self.folder.path, self.uid, self.gid)
        self.api.ports = self.ports
        self.files = FileTail(self.folder.path / FILES_LOG, self.api.show)  # shares' lines
        self.queue: PacketQueue | None = None
        self.peek_queue: PacketQueue | None = None
        self.fast = FastPaths(self.gate, self.bus, self.session, settings.nflog_buffer)
        self.web_ports = net.web_ports
        # A pod's sidecar (podrules.py): its forwarder and proxy listen on loopback.
        self.pod = net.topology is Topology.POD
        self.dns_port = podrules.POD_DNS_PORT if self.pod else 53
        self.gate.tls_ports = frozenset(net.tls_ports) if self.web_ports else frozenset()
        self.intercept = net.intercept_tls
        self.gate.request_ports = frozenset(
            p for p in self.web_ports if self.intercept or p not in self.gate.tls_ports
        )
        ca = settings.upstream_ca
        self.upstream_ca = str(self.folder.file(ca)) if ca else None
        if self.web_ports and not self.intercept and settings.peek and not self.pod:
            from snitch.gateway.peeker import Peeker

            self.gate.peeker = Peeker(self.gate)
        self.mitm: MitmProcess | None = None
        self.configure(settings.run or RunSettings())
        if self.secrets:  # their hosts' TLS is terminated: every web flow through mitmproxy
            self.gate.peeker = None

    def configure(self, run: RunSettings) -> None:
        """This run's settings: mode, rules, ask deadlines, command. A warm gateway
        (no run in its settings) gets them from its claim, before any packet."""
        self.mode = run.mode
        self.writer.set_limits(run.log_limits)
        extra: list[Rule] = []
        if run.policy:
            from snitch.core.policyfile import load_policy

            extra = load_policy(self.folder.file(run.policy))
        self.rules.labels = run.labels
        self.rules.configure(extra, self.mode, run.profile or None, run.image or None)
        self.asker = None
        self.gate.fake = self.dns.fake = None
        if self.mode is Mode.ASK:
            self.asker = Asker(
                self.rules,
                self.bus,
                self.session,
                self.gate.finish,
                timeout=run.ask_timeout,
                default=run.ask_default,
                max_pending=run.max_pending,
            )
            self.gate.fake = self.dns.fake = FakeIPs(self.names, self.dns.lookup_all)
            self.asker.fake = self.gate.fake
        self.gate.asker = self.api.asker = self.asker
        self.fleet = FleetLink.of_run(run.decision_service, self.session, self.asker,
                                      self.rules, self.bus, self.info)  # fmt: skip
        self.private = run.private_answers
        self.protect()
        self.command = list(run.command)
        self.image = run.image
        self.secrets = run.secrets  # a warm gateway never has any (the pool is skipped)

    def protect(self) -> None:
        """Where no name may lead: the gateway, the sandbox network, the host (its
        networks, the egress gateway) and, unless allowed, private ranges; the egress
        network's other members are the outside (snitch/gateway/addresses.py)."""
        host = list(self.settings.host_networks)
        self.guard.protected = ProtectedAddresses(
            gateway=networks(self.own),
            host=networks([*host, *self.host_hops, self.egress_gateway or ""]),
            outside=networks([self.egress_subnet]),
            private=self.private,
        )

    def info(self) -> SessionInfo:
        asker = self.asker
        return SessionInfo(
            session=self.session,
            mode=str(self.mode),
            command=tuple(self.command),
            image=self.image,
            started=self.started,
            gateway_ip=self.sandbox_ip,
            ask_timeout=asker.timeout if asker else None,
            ask_default=str(asker.default) if asker else None,
            prompts=dataclasses.replace(asker.prompt_counts()) if asker else None,
            log_dropped=self.writer.dropped,
            labels=self.rules.labels,
        )

    def write_state(self, state: GatewayState, **more: Any) -> None:
        status = GatewayStatus(state, time.time(), os.getpid(), **more)
        self.folder.write_gateway_status(status, self.uid, self.gid)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        ifs = self.attach()
        stop = asyncio.Event()

        def on_signal(signum: int, frame: object) -> None:
            # A Python-level handler runs between any two bytecodes, so before the next
            # packet is judged (asyncio's would wait for its turn in the loop).
            for queue in (self.queue, self.peek_queue):
                if queue is not None:
                    queue.refusing = True
            loop.call_soon_threadsafe(stop.set)

        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, on_signal)
        if self.standby:
            # Everything slow happens before the claim; no packet is judged before it.
            if self.web_ports:
                await self.start_mitm(ifs.sandbox_ip, report=False)
            self.write_state(GatewayState.STANDBY)
            while not self.folder.claimed():
                if stop.is_set():
                    await self.stop()
                await asyncio.sleep(STANDBY_POLL_SECONDS)
            self.configure(self.folder.read_claim())
        if self.mode is Mode.ENFORCE and self.settings.kernel_cache and not self.pod:
            self.fast.start_kernel_cache(ifs.sandbox)
        self.queue = PacketQueue(self.gate.on_packet)
        self.queue.start()
        if self.gate.peeker is not None:
            self.peek_queue = PacketQueue(self.gate.peeker.on_packet, netfilter.PEEK_QUEUE)
            self.peek_queue.start()
        self.sandbox_ip = ifs.sandbox_ip
        await self.dns.start(ifs.sandbox_ip, self.dns_port)
        await self.api.start()
        self.files.start()
        self.writer.start()
        self.rules.start()
        if self.asker is not None:
            self.asker.start()
        if self.fleet is not None:
            self.fleet.start()
        if self.gate.revoker is not None:
            self.gate.revoker.start()
        if self.gate.attributor is not None:
            self.gate.attributor.run()
        self.bus.log(
            LogEntry(
                EntryKind.EVENT,
                session=self.session,
                message=f"gateway ready: mode={self.mode} upstream={self.upstream}",
            )
        )
        peek = self.gate.peeker is not None and self.mitm is None
        self.write_state(GatewayState.READY, sandbox_ip=ifs.sandbox_ip, mode=str(self.mode),
                         mitm=self.mitm is not None, peek=peek)  # fmt: skip
        log.info("ready on %s (%s), egress %s", ifs.sandbox, ifs.sandbox_ip, ifs.egress)
        gc.freeze()  # what start-up made lives on: the collector need not scan it again
        mitm_task = None
        if self.web_ports and self.mitm is None:
            # Loads in the background; a SIGTERM meanwhile is served at once. (With peek
            # the run does not wait for it: few flows need it, and those wait, parked.)
            mitm_task = loop.create_task(self.start_mitm(ifs.sandbox_ip))
        await stop.wait()
        if mitm_task is not None and not mitm_task.done():
            mitm_task.cancel()
        await self.stop()

    def attach(self) -> netfilter.Interfaces:
        """Routed: find both interfaces and install the rules (netfilter.py). A pod's
        rules were installed by its init step (podrules.py): checked, never changed."""
        if self.pod:
            podrules.wait_installed()
            ifs = netfilter.Interfaces("lo", podrules.POD_LISTEN, 8, "")
        else:
            ifs = netfilter.discover(self.egress_subnet, self.egress_gateway)
        self.gate.own_addresses = frozenset(netfilter.own_addresses())
        self.own = [*self.gate.own_addresses, f"{ifs.sandbox_ip}/{ifs.sandbox_prefix}"]
        self.host_hops = netfilter.default_gateways()
        self.protect()
        if self.web_ports:
            self.gate.park_web_flows(frozenset(self.web_ports))
            if not self.pod:
                if self.gate.peeker is not None:
                    self.fast.start_peek_log()
                netfilter.apply(ifs, self.web_ports, PROXY_PORT,
                                peek=self.gate.peeker is not None,
                                peek_log=self.fast.peek_log is not None)  # fmt: skip
        elif not self.pod:
            netfilter.apply(ifs)
        return ifs

    async def start_mitm(self, listen_host: str, report: bool = True) -> None:
        """mitmproxy takes a second to load: its worker process (mitmproc.py) starts
        after the gateway is ready, and allowed web flows wait for it (parked in the
        queue) meanwhile (a warm gateway starts it before its claim)."""
        from snitch.gateway.mitmproc import MitmProcess
        from snitch.gateway.mitmserve import MitmServer
        from snitch.gateway.mitmwire import Start
        from snitch.gateway.proxyjudge import ProxyJudge

        # Only an intercepting gateway is given the install's CA (and may make it);
        # mitmproxy wants one anyway: the others make a throwaway one of their own.
        # A run with secrets terminates TLS to their bound hosts: it has the CA too.
        uses_ca = self.intercept or bool(self.secrets)
        confdir = self.data / "ca" if uses_ca else UNUSED_CA_DIR
        port = podrules.POD_PROXY_PORT if self.pod else PROXY_PORT
        server = MitmServer(self.gate, ProxyJudge(self.gate, self.secrets))
        mitm = MitmProcess(server, self.mitm_exited)
        bindings = [dataclasses.asdict(b) for b in self.secrets]
        await mitm.start(Start(listen_host, port, str(confdir), self.intercept,
                               self.upstream_ca, bindings,
                               sorted(self.gate.tls_ports)))  # fmt: skip
        self.mitm = mitm
        await mitm.listening()
        if uses_ca and self.uid is not None and self.gid is not None:  # the host's CA
            for path in [confdir, *confdir.iterdir()]:
                os.chown(path, self.uid, self.gid)
        gc.freeze()
        self.gate.web_ready()
        if report:
            self.write_state(GatewayState.READY, sandbox_ip=listen_host, mode=str(self.mode),
                             mitm=True)  # fmt: skip

    def mitm_exited(self, code: int) -> None:
        """The worker died: connections to the proxy port are refused from now on (fail
        closed); the log says so and the status no longer claims mitmproxy."""
        self.bus.log(LogEntry(EntryKind.EVENT, session=self.session, message=(
            f"mitmproxy worker exited (code {code}): web connections through it are "
            "refused until the run ends")))  # fmt: skip
        if self.sandbox_ip:  # not while standing by: the claim finds it unready
            self.write_state(GatewayState.READY, sandbox_ip=self.sandbox_ip,
                             mode=str(self.mode), mitm=False)  # fmt: skip

    async def stop(self) -> None:
        """Flush and close everything first; mitmproxy gets a moment, then we are gone
        (nothing of its state is worth waiting for when the session ends). The queues go
        first: a gateway resumed only to be stopped (it was paused) lets nothing it held
        leave while it reads the last log copies."""
        self.close_queues()
        if self.mitm is not None:  # nothing more is proxied; it need not be waited for
            self.mitm.stop()
        await self.fast.drain()
        if self.fleet is not None:  # withdraw its questions, leave the fleet
            await self.fleet.close()
        self.close()
        logging.shutdown()
        os._exit(0)

    def close_queues(self) -> None:
        """Stop judging packets: what the kernel still holds for the queues is dropped."""
        if self.queue is not None:
            self.queue.close()
            self.queue = None
        if self.peek_queue is not None:
            self.peek_queue.close()
            self.peek_queue = None

    def close(self) -> None:
        if self.asker is not None:
            self.asker.close()
        if self.gate.revoker is not None:
            self.gate.revoker.close()
        self.files.close()
        self.api.close()
        self.ports.close()
        self.close_queues()
        self.fast.close()
        if self.gate.attributor is not None:  # the log lines still waiting for a process
            self.gate.attributor.close()
        self.dns.close()
        self.rules.close()
        if self.web_ports:
            read = self.gate.peeker.read_count if self.gate.peeker is not None else 0
            more = self.fast.peek_summary()
            self.bus.log(LogEntry(EntryKind.EVENT, session=self.session,
                                  message=f"web flows read in passing: {read}{more}"))  # fmt: skip
        self.bus.log(LogEntry(EntryKind.EVENT, session=self.session, message="gateway stopped"))
        self.writer.close()
        self.write_state(GatewayState.STOPPED, log_dropped=self.writer.dropped)


def main() -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr
    )
    os.umask(0o077)  # every file it writes into the host's data dir is private
    try:
        gateway = Gateway(GatewaySettings.from_env(os.environ))
        asyncio.run(gateway.run())
    except Exception as exc:
        log.exception("gateway failed")
        print(f"coderun gateway: {exc}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
