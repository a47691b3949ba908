"""mitmproxy inside the gateway: HTTP logs, TLS SNI, and decisions at the ClientHello.

TCP to the web ports is redirected to a transparent mitmproxy *after* the flow's
verdict. This addon, in the gateway's own event loop, then:

- logs every HTTP request (method, URL, status, sizes, duration) as an ``http`` entry;
- without ``--intercept-tls`` relays TLS untouched as raw TCP, logging its SNI and byte
  counts as a ``tls`` entry; with it, mitmproxy terminates TLS with the install's CA and
  full URLs are logged;
- decides a *deferred* flow (a bare address on a TLS port, no name known) by the
  ClientHello's SNI, holding it in ask mode; and refuses any TLS connection whose SNI a
  deny rule names, whatever address it went to;
- never lets an SNI vouch for an address it does not lead to: the name counts only when
  the name table already maps the address to it (a real DNS answer), or when the name
  may be looked up and its answer holds the address. Otherwise the flow is judged (and
  held, and logged) by its address, the name shown only as *claimed, unverified*; a
  name nobody allowed is never looked up to check it (that would leak it);
- judges every HTTP request it sees by its method and path (requestgate.py): a deny
  rule naming its Host, a request rule, or (ask mode) a person; a refused request gets
  403 with an ``X-Coderun-Denied`` header (refusal.py), logged;
- connects to the real address behind a synthetic (ask mode) one.

mitmproxy is imported lazily: it exists only in the gateway image (Python >= 3.12).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import time
from collections.abc import Generator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from snitch.core.model import Action, Decision, EntryKind, FlowKey, LogEntry, Proto, Query
from snitch.core.settings import SecretBinding
from snitch.gateway import peek
from snitch.gateway.asker import claimed_note
from snitch.gateway.netfilter import DENY_MARK
from snitch.gateway.peeker import MAX_HEAD
from snitch.gateway.refusal import host_named
from snitch.gateway.requestgate import DECISION_KEY, DENIED_KEY, RequestGate, seen_request
from snitch.gateway.secrets import SecretsAddon

if TYPE_CHECKING:
    from snitch.gateway.flowgate import FlowGate

log = logging.getLogger(__name__)
PROXY_PORT = 8080


class FutureVerdict:
    """Stands in for a queued packet when a *connection* is held (at its ClientHello):
    the verdict resolves a future instead of reaching the kernel."""

    def __init__(self, future: asyncio.Future[bool]) -> None:
        self.future = future
        self.denied = False

    def get_payload(self) -> bytes:
        return b""

    def retain(self) -> None:
        pass

    def set_mark(self, mark: int) -> None:
        # Only the deny mark says no: an allowed web flow may be marked to be read in
        # passing (PEEK_MARK), which means nothing to a connection already in mitmproxy.
        self.denied = bool(mark & DENY_MARK)

    def accept(self) -> None:
        if not self.future.done():
            self.future.set_result(not self.denied)

    def drop(self) -> None:
        if not self.future.done():
            self.future.set_result(False)


class SnitchAddon:
    def __init__(self, gate: FlowGate, intercept: bool,
                 secrets: SecretsAddon | None = None) -> None:  # fmt: skip
        self.gate = gate
        self.intercept = intercept
        self.secrets = secrets  # TLS to a secret's bound host is terminated (secrets.py)
        self.sni: dict[str, str] = {}  # client connection id -> SNI
        self.counts: dict[str, list[int]] = {}  # flow id -> [bytes out, bytes in]
        self.ready = asyncio.Event()
        self.waiting: dict[str, FlowKey] = {}  # client id -> deferred flow, until decided
        self.requests = RequestGate(gate)
        self.unread: set[str] = set()  # client ids whose head goes on: mitmproxy must wait

    def client_disconnected(self, client: Any) -> None:
        """A deferred connection that closed before saying who it wants (a silent port
        probe) is still a flow: logged as denied."""
        self.unread.discard(client.id)
        key = self.waiting.pop(client.id, None)
        if key is None and client.peername:  # it never sent a byte: find it by its source
            src, sport = client.peername[:2]
            key = next((k for k in self.gate.deferred if k.src == src and k.sport == sport),
                       None)  # fmt: skip
        if key is not None and self.gate.deferred.pop(key, None) is not None:
            decision = Decision(Action.DENY, None, "closed before its TLS ClientHello")
            self.gate.log_flow(key, decision, names=())

    def running(self) -> None:
        """mitmproxy's servers are up."""
        self.ready.set()

    # -- decisions at the first bytes -------------------------------------------------------
    async def next_layer(self, nextlayer: Any) -> None:
        from mitmproxy.net.tls import starts_like_tls_record
        from mitmproxy.proxy import layers
        from mitmproxy.proxy.layers.tls import parse_client_hello

        ctx = nextlayer.context
        if nextlayer.layer is not None or ctx.client.transport_protocol != "tcp":
            return
        if len(ctx.layers) > 1:
            return  # an inner decision (inside TLS): mitmproxy's own rules
        data = nextlayer.data_client()
        if self._deferred(ctx):
            self.waiting[ctx.client.id] = self._key(ctx)  # logged if it closes undecided
        self.unread.discard(ctx.client.id)
        if not starts_like_tls_record(data):
            if not data:
                return  # wait for the client's first bytes
            seen = peek.read(data)
            if seen.partial and len(data) < MAX_HEAD:
                # A request line (or record header) cut short: mitmproxy's default would
                # relay it as raw TCP, unread. Asked again with more data.
                self.unread.add(ctx.client.id)
                return
            # Not TLS after all: a deferred flow is decided by its address.
            refused = self._deferred(ctx) and not await self.decide(ctx, "")
            if refused or self._unreadable(ctx, seen, len(data)):
                nextlayer.layer = Refuse(ctx)
            elif seen.kind == "http":  # parsed and judged as HTTP, however it starts
                from mitmproxy.proxy.layers.http import HTTPMode

                nextlayer.layer = layers.HttpLayer(ctx, HTTPMode.transparent)
            return  # anything else: mitmproxy's defaults (raw TCP)
        try:
            hello = parse_client_hello(data)
        except ValueError:
            hello = None
            if self._deferred(ctx) and not await self.decide(ctx, ""):
                nextlayer.layer = Refuse(ctx)
            return
        if hello is None:
            return  # the ClientHello is not complete yet: asked again with more data
        sni = (hello.sni or "").lower()
        self.sni[ctx.client.id] = sni
        if not await self.decide(ctx, sni):
            nextlayer.layer = Refuse(ctx)
        elif not self.intercept and not self._secret_host(sni, ctx):
            nextlayer.layer = layers.TCPLayer(ctx)  # relayed as is; counted by tcp hooks

    def _unreadable(self, ctx: Any, seen: peek.Seen, size: int) -> bool:
        """Refuse (and log) what mitmproxy would relay unread: a head still incomplete
        after ``MAX_HEAD`` bytes, or bytes that are no request line this gateway reads
        but carry a Host header a deny rule names, or any Host while request rules are
        in force (a lenient server could read them as a request)."""
        key = self._key(ctx)
        rules = self.gate.rules
        if seen.partial:
            reason, rule_id = f"request head not complete after {size} bytes: its name unread", None
        elif seen.kind == "other" and seen.host:
            denied = self.name_denied(seen.host, key.dport)
            if denied is not None:
                why = host_named(seen.host, rules.rule(denied.rule_id), denied.rule_id)
                reason = f"{why} (in a request this gateway does not parse)"
                rule_id = denied.rule_id
            elif rules.has_path_rules():
                reason, rule_id = "a Host in a request this gateway does not parse", None
            else:
                return False
        else:
            return False
        self.gate.bus.log(
            LogEntry(
                EntryKind.HTTP, session=self.gate.session, proto="tcp", src=key.src,
                sport=key.sport, dst=key.dst, dport=key.dport,
                names=[seen.host] if seen.host else [], url=f"http://{seen.host or key.dst}",
                verdict="deny", rule_id=rule_id,
                rule=rules.describe(rule_id) if rule_id is not None else "", reason=reason,
            )
        )  # fmt: skip
        return True

    def _secret_host(self, sni: str, ctx: Any) -> bool:
        return self.secrets is not None and self.secrets.intercepts(sni, ctx.server.address[0])

    def _key(self, ctx: Any) -> FlowKey:
        src, sport = ctx.client.peername[:2]
        dst, dport = ctx.server.address[:2]
        return FlowKey(Proto.TCP, src, int(sport), dst, int(dport))

    def _deferred(self, ctx: Any) -> bool:
        return self._key(ctx) in self.gate.deferred

    async def decide(self, ctx: Any, sni: str) -> bool:
        """True to let the connection go on."""
        gate = self.gate
        key = self._key(ctx)
        self.waiting.pop(ctx.client.id, None)
        verified = bool(sni) and sni in gate.names.names_for(key.dst)
        denied = self.name_denied(sni, key.dport) if sni else None
        if denied is not None:  # a deny rule names the SNI: refused wherever it went
            gate.deferred.pop(key, None)
            if not verified:
                denied = dataclasses.replace(
                    denied, reason=f"{denied.reason} ({claimed_note(sni)})"
                )
            gate.log_flow(key, denied, names=(sni,) if verified else ())
            return False
        if gate.deferred.pop(key, None) is None:
            return True  # allowed at its SYN, by its address or its names
        names = gate.names.names_for(key.dst)
        claimed = ""
        if sni and (verified or await self._name_leads_here(sni, key.dst)):
            names = (sni,)
        elif sni:
            claimed = sni  # judged by its address; the name is shown as unverified
        exe = await gate.exe_of(key)
        decision = gate.judge(Query(Proto.TCP, key.dst, key.dport, names, exe=exe))
        if decision is None:  # ask mode, no rule: a person decides
            future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
            gate.hold(FutureVerdict(future), key, names, claimed)
            return await future
        if claimed:
            decision = dataclasses.replace(
                decision, reason=f"{decision.reason} ({claimed_note(claimed)})"
            )
        if gate.revoker is not None:
            gate.revoker.note(key, decision, names)
        gate.log_flow(key, decision, names=names)
        return decision.action is Action.ALLOW

    def name_denied(self, name: str, port: int) -> Decision | None:
        return self.gate.rules.name_denied(name, port)

    async def _name_leads_here(self, sni: str, dst: str) -> bool:
        """Whether ``sni`` resolves to ``dst``, looked up only if the name may be looked
        up at all (else the lookup itself would carry the name out)."""
        lookup = self.gate.rules.peek(Query(Proto.DNS, None, 53, (sni,)))
        if lookup is None or lookup.action is not Action.ALLOW or self.gate.resolve is None:
            return False
        try:
            return dst in await self.gate.resolve(sni)
        except Exception:
            return False

    # -- where to connect -------------------------------------------------------------------
    def server_connect(self, data: Any) -> None:
        fake = self.gate.fake
        if fake is None or data.server.address is None:
            return
        host, port = data.server.address[:2]
        if fake.is_fake(host):
            real = fake.real_address(host)
            if real is not None:
                data.server.address = (real, port)

    # -- request rules (plain HTTP, or HTTPS with interception): requestgate.py -------------
    async def requestheaders(self, flow: Any) -> None:
        """Judge the request (it may wait for a person: the event loop goes on); a
        refused one is answered 403 without contacting the server."""
        outcome = await self.requests.judge(seen_request(flow))
        if outcome is None:
            return
        flow.metadata[DECISION_KEY] = outcome.decision
        if outcome.refusal is not None:
            from mitmproxy import http

            refusal = outcome.refusal
            flow.metadata[DENIED_KEY] = outcome.decision
            flow.response = http.Response.make(refusal.status, refusal.body,
                                               dict(refusal.headers))  # fmt: skip

    # -- logging ----------------------------------------------------------------------------
    def tcp_message(self, flow: Any) -> None:
        counts = self.counts.setdefault(flow.id, [0, 0])
        message = flow.messages[-1]
        counts[0 if message.from_client else 1] += len(message.content)
        flow.messages.clear()  # counted; do not keep a copy of the stream in memory

    def tcp_end(self, flow: Any) -> None:
        self._log_tls(flow, "")

    def tcp_error(self, flow: Any) -> None:
        self._log_tls(flow, str(flow.error) if flow.error else "error")

    def _log_tls(self, flow: Any, error: str) -> None:
        out, into = self.counts.pop(flow.id, [0, 0])
        sni = self.sni.pop(flow.client_conn.id, "")
        dst, dport = flow.server_conn.address[:2] if flow.server_conn.address else ("", 0)
        started = flow.client_conn.timestamp_start or time.time()
        self.gate.bus.log(
            LogEntry(
                EntryKind.TLS, session=self.gate.session, proto="tcp",
                src=flow.client_conn.peername[0], sport=flow.client_conn.peername[1],
                dst=dst, dport=dport, names=[sni] if sni else [], sni=sni,
                url=f"tls://{sni or dst}:{dport}", bytes_out=out, bytes_in=into,
                duration_ms=(time.time() - started) * 1000, message=error,
            )
        )  # fmt: skip

    def response(self, flow: Any) -> None:
        self._log_http(flow, "")

    def error(self, flow: Any) -> None:
        self._log_http(flow, str(flow.error) if flow.error else "error")

    def _log_http(self, flow: Any, error: str) -> None:
        req, resp = flow.request, flow.response
        end = resp.timestamp_end if resp is not None and resp.timestamp_end else time.time()
        sni = flow.client_conn.sni or ""
        denied: Decision | None = flow.metadata.get(DENIED_KEY)
        decided: Decision | None = denied or flow.metadata.get(DECISION_KEY)
        self.gate.bus.log(
            LogEntry(
                EntryKind.HTTP, session=self.gate.session, proto="tcp",
                src=flow.client_conn.peername[0], sport=flow.client_conn.peername[1],
                dst=flow.server_conn.address[0] if flow.server_conn.address else "",
                dport=req.port, names=[req.pretty_host], sni=sni, method=req.method,
                url=flow.metadata.get("coderun.url") or req.pretty_url,
                status=resp.status_code if resp is not None else 0,
                bytes_out=len(req.raw_content or b""),
                bytes_in=len(resp.raw_content or b"") if resp is not None else 0,
                duration_ms=(end - req.timestamp_start) * 1000, message=error,
                verdict="deny" if denied is not None else str(decided.action) if decided else "",
                rule_id=decided.rule_id if decided is not None else None,
                rule=self.gate.rules.describe(decided.rule_id) if decided is not None else "",
                reason=decided.reason if decided is not None else "",
                origin=str(decided.origin) if decided is not None else "",
            )
        )  # fmt: skip


def _refuse_layer() -> type:
    from mitmproxy.proxy import commands, events, layer

    class _Refuse(layer.Layer):  # type: ignore[misc]
        """Closes the client's connection at once: the flow was denied."""

        def _handle_event(self, event: Any) -> Generator[Any, Any, None]:
            if isinstance(event, events.Start):
                yield commands.CloseConnection(self.context.client)

    return _Refuse


def Refuse(ctx: Any) -> Any:  # noqa: N802 - reads like the layer class it makes
    return _refuse_layer()(ctx)


def patient_next_layer(addon: SnitchAddon) -> Any:
    """mitmproxy's layer choice, made only once ``addon`` has read enough of the head
    (a request cut short would otherwise be relayed as raw TCP, unread)."""
    from mitmproxy.addons import next_layer

    class PatientNextLayer(next_layer.NextLayer):  # type: ignore[misc]
        def next_layer(self, nextlayer: Any) -> None:
            if nextlayer.layer is None and nextlayer.context.client.id in addon.unread:
                return  # asked again when more of the head has come
            super().next_layer(nextlayer)

    return PatientNextLayer()


def import_mitmproxy() -> None:
    import mitmproxy.addons.core  # noqa: F401
    import mitmproxy.addons.next_layer  # noqa: F401
    import mitmproxy.addons.proxyserver  # noqa: F401
    import mitmproxy.addons.tlsconfig  # noqa: F401
    import mitmproxy.master  # noqa: F401
    import mitmproxy.options  # noqa: F401


class Mitm:
    """Runs mitmproxy's master in the current event loop."""

    def __init__(self, gate: FlowGate, listen_host: str, confdir: Path, intercept: bool,
                 upstream_ca: str | None = None,
                 secrets: tuple[SecretBinding, ...] = (),
                 port: int | None = None) -> None:  # fmt: skip
        self.gate = gate
        self.listen_host = listen_host
        self.port = port or PROXY_PORT
        self.confdir = confdir
        self.intercept = intercept
        self.upstream_ca = upstream_ca
        self.master: Any = None
        self.secrets = SecretsAddon(gate, secrets) if secrets else None
        self.addon = SnitchAddon(gate, intercept, self.secrets)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        # Importing mitmproxy takes most of a second: in a thread, so the event loop
        # (verdicts, DNS, the API, signals) goes on meanwhile.
        await asyncio.to_thread(import_mitmproxy)
        from mitmproxy import options
        from mitmproxy.addons import core, proxyserver, tlsconfig
        from mitmproxy.master import Master

        logging.getLogger("mitmproxy").setLevel(logging.WARNING)
        self.confdir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.confdir, 0o700)
        opts = options.Options()
        self.master = Master(opts, event_loop=asyncio.get_running_loop())
        # Ours first: its next_layer decision must come before mitmproxy's default one.
        self.master.addons.add(self.addon)
        if self.secrets is not None:  # after ours: a request a rule refused stays refused
            self.master.addons.add(self.secrets)
        # Only the addons a logging transparent proxy needs: every hook walks them all.
        self.master.addons.add(
            core.Core(),
            proxyserver.Proxyserver(),
            patient_next_layer(self.addon),
            tlsconfig.TlsConfig(),
        )
        # Options that addons define exist only once the addons are added.
        opts.update(
            mode=["transparent"], listen_host=self.listen_host, listen_port=self.port,
            confdir=str(self.confdir), connection_strategy="lazy",
            stream_large_bodies="1m",
        )  # fmt: skip
        if self.upstream_ca:
            opts.update(ssl_verify_upstream_trusted_ca=self.upstream_ca)
        self._task = asyncio.get_running_loop().create_task(self.master.run())

    async def listening(self, timeout: float = 30.0) -> None:
        await asyncio.wait_for(self.addon.ready.wait(), timeout)

    def ca_cert(self) -> Path:
        return self.confdir / "mitmproxy-ca-cert.pem"

    async def stop(self) -> None:
        if self.master is not None:
            self.master.shutdown()
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, 3)
            except (TimeoutError, asyncio.CancelledError):
                self._task.cancel()
