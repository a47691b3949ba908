"""The verdict on every NEW flow the queue hands us, in every mode."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any

from snitch.core.grammar import Origin, Topic
from snitch.core.grammar import Verdict as LogVerdict
from snitch.core.logentry import EntryKind, LogEntry, flow_log_dict
from snitch.core.model import Action, Decision, FlowKey, Mode, Proto, Query
from snitch.gateway.events import EventBus
from snitch.gateway.fakeip import Rebound
from snitch.gateway.glanceguard import GlanceGuard
from snitch.gateway.kernelcache import Entry, KernelCache, KernelCacheError
from snitch.gateway.names import NameTable
from snitch.gateway.netfilter import DENY_MARK, GLANCE_MARK, PEEK_MARK
from snitch.gateway.packet import BadPacket, parse_flow, tcp_flags, tcp_seq
from snitch.gateway.queue import QueuedPacket
from snitch.gateway.rebind import RebindGuard
from snitch.gateway.recentverdicts import KeptVerdicts, RetransmittedSyns
from snitch.gateway.rulebook import RuleBook, requests_decided

if TYPE_CHECKING:
    from snitch.gateway.asker import Asker
    from snitch.gateway.attribution import Attributor
    from snitch.gateway.fakeip import FakeIPs
    from snitch.gateway.peeker import Peeker
    from snitch.gateway.revocation import Revoker

log = logging.getLogger(__name__)


class FlowGate:
    def __init__(self, rules: RuleBook, names: NameTable, bus: EventBus, session: str) -> None:
        self.rules = rules
        self.names = names
        self.bus = bus
        self.session = session
        self.asker: Asker | None = None  # set in ask mode
        self.fake: FakeIPs | None = None  # set in ask mode: synthetic answers to route
        # Notes which rule let each flow through; cuts them when it ends (not in audit).
        self.revoker: Revoker | None = None
        # With mitmproxy: TLS ports whose bare-address flows wait for their SNI.
        self.tls_ports: frozenset[int] = frozenset()
        # With mitmproxy: TCP ports whose HTTP requests it sees (plain HTTP, or TLS it
        # intercepts): a connection there may go through for its requests to be judged.
        self.request_ports: frozenset[int] = frozenset()
        self.deferred: dict[FlowKey, float] = {}
        # TCP ports redirected to mitmproxy; allowed packets to them wait in _parked
        # until it listens (the gateway is ready before mitmproxy has loaded).
        self.web_ports: frozenset[int] = frozenset()
        self.own_addresses: frozenset[str] = frozenset()  # the gateway's: never deferred
        # Allowed web flows that need no proxy are read in passing instead (peeker.py).
        self.peeker: Peeker | None = None
        # A name never vouches for an address inside (loopback, the host, private
        # ranges): the gateway shares the DNS forwarder's guard (snitch/gateway/rebind.py).
        self.guard = RebindGuard(rules)
        # Resolves an allowed name for real (the DNS forwarder's lookup), for mitmproxy
        # to check that a ClientHello's name does lead to the address it went to.
        self.resolve: Callable[[str], Awaitable[list[str]]] | None = None
        self._parked: list[QueuedPacket] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        # Allowed flows to synthetic addresses whose packet waits for its DNAT: a copy
        # (a retransmitted SYN) is dropped meanwhile, never judged or asked about again.
        self._routing: set[FlowKey] = set()
        # TCP flows decided in the last few seconds: a retransmitted SYN gets the same
        # verdict, no second line (recentverdicts.py).
        self.recent = RetransmittedSyns()
        # Enforce and audit: a destination's verdict and names while they hold.
        self._verdicts = KeptVerdicts()
        # Enforce: lasting verdicts also go to the kernel (kernelcache.py), whose flows
        # come back through NFLOG to ``on_kernel_log`` to be logged.
        self.kernel: KernelCache | None = None
        # Set while the requests of unheld plain-HTTP heads are copied and read (fastpaths).
        self.glance: GlanceGuard | None = None
        self.kernel_logged = 0  # flows the kernel decided, logged from NFLOG
        # Which sandbox process made a flow (asked of the host, attribution.py): logged
        # with the flow; awaited (briefly) only when an exe rule could decide it.
        self.attributor: Attributor | None = None

    def use_kernel(self, cache: KernelCache) -> None:
        """Hand lasting verdicts to ``cache``; it is flushed first thing whenever the
        rules change (before the revoker cuts flows) and when an address's names change."""
        self.kernel = cache
        self.rules.listeners.insert(0, self.forget_kernel)
        self.names.listeners.append(lambda ip: self.forget_kernel())

    def forget_kernel(self) -> None:
        """Flush the kernel cache's verdicts (they carry the route's mark too)."""
        if self.kernel is not None:
            self.kernel.clear()

    def park_web_flows(self, ports: frozenset[int]) -> None:
        self.web_ports = ports
        self._parked = []

    def web_ready(self) -> None:
        """mitmproxy listens: let the parked packets go."""
        parked, self._parked = self._parked or [], None
        for pkt in parked:
            pkt.accept()

    def on_packet(self, pkt: QueuedPacket) -> None:
        """Called by the queue for each NEW packet; never raises (fail closed: drop)."""
        try:
            data = pkt.get_payload()
            key = parse_flow(data)
        except BadPacket as exc:
            pkt.drop()
            self._dropped(str(exc))
            return
        except Exception as exc:  # pragma: no cover - a bug must not kill the gateway
            pkt.drop()
            self._dropped(f"internal error: {exc!r}")
            return
        try:
            revoker = self.revoker
            if (
                revoker is not None
                and revoker.cut
                and revoker.refuses(key, tcp_flags(data) if key.proto is Proto.TCP else 0)
            ):
                # A packet of a flow whose rule ended: refused, logged once when cut.
                self.apply(pkt, Decision(Action.DENY, None, "cut"), key)
                return
            if self._routing and key in self._routing:
                pkt.drop()  # the first packet of this flow goes once it is routed
                return
            if key.proto is Proto.TCP and self.recent.flows:
                repeated = self.recent.repeat(key, tcp_seq(data))
                if repeated is not None:
                    # A retransmitted SYN of a flow just decided: the same verdict, no line.
                    self.apply(pkt, repeated, key)
                    return
            self.judge_packet(pkt, key)
        except Exception as exc:  # pragma: no cover
            log.exception("deciding %s", key)
            self.finish(pkt, key, Decision(Action.DENY, None, f"internal error: {exc!r}"))

    def judge(self, query: Query) -> Decision | None:
        """The rules' verdict on ``query``; None in ask mode when no rule decides it (then
        a person does: ``hold`` the flow)."""
        if self.rules.mode is Mode.ASK and self.asker is not None:
            decision = self.rules.decide(query)
        else:
            decision = self.rules.verdict(query)
        if decision is None or (decision.rule_id is None and decision.origin is Origin.DEFAULT):
            return self.for_requests(query) or decision
        return decision

    def for_requests(self, query: Query) -> Decision | None:
        """A connection no rule decides, to a destination that request rules (``--path``,
        ``--method``) are about, on a port where mitmproxy sees its requests: it goes
        through, and each request is decided (mitm.py). None otherwise."""
        if query.proto is not Proto.TCP or query.port not in self.request_ports:
            return None
        return requests_decided(self.rules, query)

    def hold(
        self, packet: QueuedPacket, key: FlowKey, names: tuple[str, ...], claimed: str = ""
    ) -> None:
        """Hold a flow for a person (after ``judge`` said None); nobody to ask: dropped."""
        if self.asker is None:
            packet.drop()
            return
        self.asker.hold(packet, key, names, claimed)
        known = self.attributor.known(key) if self.attributor is not None else None
        if known is not None:
            asker = self.asker
            known.add_done_callback(lambda f: asker.attributed(key, f.result()))

    def judge_packet(self, pkt: QueuedPacket, key: FlowKey) -> None:
        rules_alone = self.asker is None and self.fake is None  # enforce or audit
        by_exe = False  # an exe rule could decide it: wait (briefly) for its process
        if self.attributor is not None:
            self.attributor.start(key)
            by_exe = self.rules.has_exe_rules()
        if rules_alone and not by_exe:
            kept = self._verdicts.get(key, self.rules.version, self.names.version)
            if kept is not None:
                self.rules.count_hit(kept[0].rule_id)
                done = self.finish(pkt, key, kept[0], names=kept[1])
                if self.kernel is not None:  # a destination used twice: worth an element
                    self._to_kernel(key, done, kept[1], kept[4])
                return
        names = self.names.names_for(key.dst)
        query = self.rules.for_flow(key.proto, key.dst, key.dport, names)
        if (
            not names
            and key.dst not in self.own_addresses
            and key.dport in self.tls_ports
            and key.proto is Proto.TCP
            and self.rules.mode is not Mode.AUDIT
            and self.rules.decide(query) is None
        ):
            # A bare address on a TLS port: let the handshake reach mitmproxy, which
            # decides (or holds) the flow by the name in its ClientHello.
            self._defer(key)
            self.apply(pkt, Decision(Action.ALLOW), key, proxy=True)
            return
        if by_exe:
            pkt.retain()  # its verdict comes after this callback
            self._spawn(self._judge_by_exe(pkt, key, query))
            return
        decision = self.judge(query)
        if decision is None:
            self.hold(pkt, key, names)
            return
        if rules_alone:
            self._keep(key, decision, names)
        self.finish(pkt, key, decision, names=names)

    async def exe_of(self, key: FlowKey) -> str | None:
        """The program of flow ``key`` for a rule to match: waited for (briefly) only when
        an exe rule is in force (the proxy judges a bare address's flow by its SNI)."""
        if self.attributor is None or not self.rules.has_exe_rules():
            return None
        found = await self.attributor.wait(key)
        return found.exe if found is not None else None

    async def _judge_by_exe(self, pkt: QueuedPacket, key: FlowKey, query: Query) -> None:
        """Judge a flow that an exe rule could decide once its process is known (or its
        deadline passed: then no exe rule matches it). Never kept: the next flow to the
        destination may be another program's."""
        try:
            found = await self.attributor.wait(key) if self.attributor is not None else None
            if found is not None:
                query = dataclasses.replace(query, exe=found.exe)
            decision = self.judge(query)
            if decision is None:
                self.hold(pkt, key, query.names)
            else:
                self.finish(pkt, key, decision, names=query.names)
        except Exception as exc:  # pragma: no cover - a bug must not leave it held
            log.exception("deciding %s", key)
            self.finish(pkt, key, Decision(Action.DENY, None, f"internal error: {exc!r}"))

    def _keep(self, key: FlowKey, decision: Decision, names: tuple[str, ...]) -> None:
        until = min(self.rules.valid_until(), self.names.expiry(key.dst))
        self._verdicts.keep(key, decision, names, self.rules.version, self.names.version, until)

    def _to_kernel(
        self, key: FlowKey, done: tuple[Decision, str] | None, names: tuple[str, ...],
        until: float,
    ) -> None:  # fmt: skip
        """Enforce mode: a lasting verdict, as given, for the kernel to repeat."""
        if done is None or self.kernel is None or self.rules.mode is not Mode.ENFORCE:
            return
        decision, verdict = done
        route = self._web_route(key) if decision.action is Action.ALLOW else ""
        if route == "park":
            return  # mitmproxy is not listening yet: these wait in user space
        rule = self.rules.rule(decision.rule_id)
        if rule is not None and rule.once_key is not None:
            return  # one connection only
        mark = PEEK_MARK if route == "peek" else GLANCE_MARK if route == "glance" else 0
        try:
            self.kernel.add(key, Entry(decision, verdict, names, self.rules.version), until, mark)
        except KernelCacheError as exc:
            log.warning("kernel verdict cache: %s", exc)

    def on_kernel_log(self, mark: int, data: bytes) -> None:
        """A flow the kernel decided from the cache: logged as the queue path logs it."""
        try:
            key = parse_flow(data)
        except BadPacket:
            return
        entry = self.kernel.entry(mark) if self.kernel is not None else None
        if entry is None:  # pragma: no cover - entries outlive their elements
            why = f"kernel decided {key} by a forgotten entry"
            self.bus.log(LogEntry(EntryKind.EVENT, session=self.session, message=why))
            return
        decision = entry.decision
        if key.proto is Proto.TCP:
            seq = tcp_seq(data)
            if self.recent.repeat(key, seq) is not None:
                return  # a retransmitted SYN: no second line
            self.recent.remember(key, decision, seq)
        self.kernel_logged += 1
        self.rules.count_hit(decision.rule_id)
        if self.revoker is not None:
            self.revoker.note(key, decision, entry.names)
            if entry.rules_version != self.rules.version and decision.action is Action.ALLOW:
                self.revoker.rules_changed()  # the rules changed while this line was on its way
        self.log_flow(key, decision, entry.verdict, entry.names)

    def _defer(self, key: FlowKey) -> None:
        now = time.monotonic()
        if len(self.deferred) > 1000:
            for old in [k for k, t in self.deferred.items() if t < now - 120]:
                del self.deferred[old]
        self.deferred[key] = now

    def finish(
        self, pkt: QueuedPacket, key: FlowKey, decision: Decision, verdict: str = "",
        names: tuple[str, ...] | None = None,
    ) -> tuple[Decision, str] | None:  # fmt: skip
        """Give the verdict and log the flow (once, at its final verdict); the decision
        and log verdict given (None: it waits for its synthetic address's route)."""
        if decision.action is Action.ALLOW and self.fake is not None and self.fake.is_fake(key.dst):
            self._routing.add(key)
            self._spawn(self._route_then_accept(pkt, key, decision))
            return None
        if decision.action is Action.ALLOW and self.guard.inside(key.dst) is not None:
            names = self.names.names_for(key.dst) if names is None else names
            refused = self.guard.refuse(key.proto, key.dst, key.dport, decision, names)
            if refused is not None:
                decision, verdict = refused, str(LogVerdict.REBIND)
        self._give(pkt, key, decision, verdict, names)
        return decision, verdict

    def _give(
        self, pkt: QueuedPacket, key: FlowKey, decision: Decision, verdict: str,
        names: tuple[str, ...] | None = None, shown: str | None = None,
    ) -> None:  # fmt: skip
        """The final verdict on a flow's packet: given, kept for its retransmitted SYNs,
        noted for the revoker, logged (``shown``: see ``log_flow``)."""
        self.apply(pkt, decision, key)
        if key.proto is Proto.TCP:
            self.recent.remember(key, decision, tcp_seq(pkt.get_payload()))
        if self.revoker is not None:
            self.revoker.note(key, decision, self.names.names_for(key.dst) if names is None
                              else names)  # fmt: skip
        self.log_flow(key, decision, verdict, names, shown)

    async def _route_then_accept(self, pkt: QueuedPacket, key: FlowKey, decision: Decision) -> None:
        """An allowed flow to a synthetic address: resolve the name for real, check the
        real address (a name never leads inside: ``rebind``), DNAT, accept."""
        allowed, verdict, shown = decision, "", None

        def refuse(ip: str, inside: str | None) -> str | None:
            refusal = self.guard.refuse_real(key.proto, ip, key.dport, allowed)
            return refusal.reason if refusal is not None else None

        try:
            if self.fake is None:
                raise RuntimeError("no synthetic addresses in this mode")
            real = await self.fake.route(key.dst, refuse)
            refused = self.guard.refuse_real(key.proto, real, key.dport, allowed)
            names = self.names.names_for(key.dst)
            rule = self.rules.decide(Query(key.proto, real, key.dport, names))
            if refused is not None:  # routed before, for a flow an address rule allowed
                decision, verdict, shown = refused, str(LogVerdict.REBIND), real
            elif rule is not None and rule.action is Action.DENY:
                decision = rule  # an address rule denies where the name led
        except Rebound as exc:
            decision = Decision(Action.DENY, decision.rule_id, exc.why)
            verdict, shown = str(LogVerdict.REBIND), exc.address
        except Exception as exc:
            decision = Decision(Action.DENY, decision.rule_id, f"could not resolve: {exc}")
        self._routing.discard(key)
        self._give(pkt, key, decision, verdict, shown=shown)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _web_route(self, key: FlowKey, proxy: bool = False) -> str:
        """How an allowed flow goes: "peek" (forwarded, its request head read in passing),
        "glance" (as "peek" here; the kernel cache's later SYNs to it: plain HTTP that
        nothing could refuse, forwarded unheld, its requests copied to NFLOG,
        glanceguard.py), "park" (to mitmproxy, which is still starting), "" (as it is:
        to mitmproxy when on a web port)."""
        if key.dport not in self.web_ports or key.proto is not Proto.TCP:
            return ""
        if not proxy and self.peeker is not None and not self.rules.has_path_rules():
            if (key.dport not in self.tls_ports and self.glance is not None
                    and not self.rules.has_host_denies() and self.glance.open()):  # fmt: skip
                return "glance"
            return "peek"
        return "park" if self._parked is not None else ""

    def apply(
        self, pkt: QueuedPacket, decision: Decision, key: FlowKey | None = None,
        proxy: bool = False,
    ) -> None:  # fmt: skip
        """The verdict on a queued packet; ``proxy``: an allowed web flow that must go
        through mitmproxy (a bare address on a TLS port)."""
        if decision.action is Action.ALLOW:
            route = self._web_route(key, proxy) if key is not None and self.web_ports else ""
            if route in ("peek", "glance"):  # a SYN the gateway sees: its head is read
                pkt.set_mark(PEEK_MARK)
            elif route == "park" and self._parked is not None:
                self._parked.append(pkt)  # mitmproxy is still starting: accept when it is up
                return
            pkt.accept()
        else:
            pkt.set_mark(DENY_MARK)  # refused (RST) or dropped by the FORWARD chain
            pkt.accept()

    def log_flow(
        self, key: FlowKey, decision: Decision, verdict: str = "",
        names: tuple[str, ...] | None = None, shown: str | None = None,
    ) -> None:  # fmt: skip
        """Log a flow; with a synthetic ``key.dst``, the real address it went to (or,
        ``shown``, the one it was refused)."""
        real = self.fake.real_address(key.dst) if self.fake is not None else None
        real = shown or real
        if names is None:
            names = self.names.names_for(key.dst)
        line = flow_log_dict(
                self.session, str(key.proto), key.src, key.sport, real or key.dst, key.dport,
                names, verdict or str(decision.action), decision.rule_id,
                self.rules.describe(decision.rule_id),
                decision.reason + (f" (via synthetic {key.dst})" if real else ""),
                str(decision.origin),
        )  # fmt: skip
        if self.attributor is None:
            self.bus.publish(Topic.LOG, line)
        else:
            self.attributor.publish_with_process(key, line, self._publish_log)

    def _publish_log(self, line: dict[str, Any]) -> None:
        self.bus.publish(Topic.LOG, line)

    def _dropped(self, why: str) -> None:
        self.bus.log(
            LogEntry(
                EntryKind.EVENT, session=self.session, verdict="deny", message=f"dropped: {why}"
            )
        )
