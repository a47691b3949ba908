"""mitmproxy in the gateway's worker process (mitmworker.py): HTTP logs, TLS SNI, and
the first bytes of each connection, reported to the gateway, which decides.

TCP to the web ports is redirected to a transparent mitmproxy *after* the flow's
verdict. This addon, in the worker's own event loop (the gateway's verdict loop never
waits behind a proxied request), then:

- asks the gateway about every connection at its first bytes (its ClientHello's SNI,
  if TLS): a deferred flow (a bare address on a TLS port) is decided there, a deny
  rule naming the SNI refuses it (proxyjudge.py); a connection that closes before
  saying anything is reported, so a silent port probe is still logged;
- without ``--intercept-tls`` relays TLS untouched as raw TCP, logging its SNI and byte
  counts as a ``tls`` entry; with it (or to a secret's bound host), mitmproxy
  terminates TLS with the install's CA and full URLs are logged;
- asks the gateway to judge every HTTP request it sees by its method and path
  (requestgate.py); a refused request gets 403 with an ``X-Coderun-Denied`` header
  (refusal.py), logged;
- connects to the real address behind a synthetic (ask mode) one, as the gateway says;
- logs every HTTP request (method, URL, status, sizes, duration) as an ``http`` entry,
  sent to the gateway's log writer.

mitmproxy is imported lazily: it exists only in the gateway image (Python >= 3.12).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Generator
from pathlib import Path
from typing import Any, Protocol

from snitch.core.logentry import EntryKind, LogEntry
from snitch.core.model import Decision
from snitch.gateway import peek
from snitch.gateway.fakeip import FakeIPs
from snitch.gateway.peeker import MAX_HEAD
from snitch.gateway.requestgate import DECISION_KEY, DENIED_KEY, Outcome, SeenRequest, seen_request
from snitch.gateway.secrets import SecretsAddon

log = logging.getLogger(__name__)
PROXY_PORT = 8080


class Gateway(Protocol):
    """What the addon asks of the gateway (mitmworker.GatewayClient)."""

    async def connection(self, src: str, sport: int, dst: str, dport: int, tls: bool,
                         sni: str, head: peek.Seen | None = None,
                         size: int = 0) -> tuple[bool, bool]: ...  # fmt: skip

    async def request(self, seen: SeenRequest) -> Outcome | None: ...

    async def real_address(self, dst: str) -> str | None: ...

    def closed(self, src: str, sport: int) -> None: ...

    def log(self, entry: LogEntry) -> None: ...


class SnitchAddon:
    def __init__(self, gateway: Gateway, intercept: bool,
                 tls_ports: frozenset[int] = frozenset()) -> None:  # fmt: skip
        self.gateway = gateway
        self.intercept = intercept
        self.tls_ports = tls_ports  # where a flow may be deferred (FlowGate.tls_ports)
        self.sni: dict[str, str] = {}  # client connection id -> SNI
        self.counts: dict[str, list[int]] = {}  # flow id -> [bytes out, bytes in]
        self.ready = asyncio.Event()
        self.asked: dict[str, bool] = {}  # client id -> whether it may go on
        self.unread: set[str] = set()  # client ids whose head goes on: mitmproxy must wait

    def client_disconnected(self, client: Any) -> None:
        """A connection that closed before it was decided is reported (a deferred one
        is still a flow: the gateway logs it as denied)."""
        self.unread.discard(client.id)
        if self.asked.pop(client.id, None) is None and client.peername:
            src, sport = client.peername[:2]
            self.gateway.closed(str(src), int(sport))

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
        self.unread.discard(ctx.client.id)
        if not data:
            return  # wait for the client's first bytes
        if not starts_like_tls_record(data):
            seen = peek.read(data)
            if seen.partial and len(data) < MAX_HEAD:
                # A request line (or record header) cut short: mitmproxy's default would
                # relay it as raw TCP, unread. Asked again with more data.
                self.unread.add(ctx.client.id)
                return
            whole = seen.kind == "http" and not seen.partial
            if whole and ctx.server.address[1] not in self.tls_ports:
                # A whole request head, on a port where no flow is deferred: the gateway's
                # answer could only be yes (ProxyJudge: no SNI, not deferred, readable);
                # the request itself is judged at its head (requestheaders). One round
                # trip less per plain HTTP connection.
                self.asked[ctx.client.id] = True
            # Not TLS after all: a deferred flow is decided by its address, a head that
            # mitmproxy would relay unread may be refused (ProxyJudge.unreadable).
            elif not (await self.decide(ctx, False, "", seen, len(data)))[0]:
                nextlayer.layer = Refuse(ctx)
                return
            if seen.kind == "http":  # parsed and judged as HTTP, however it starts
                from mitmproxy.proxy.layers.http import HTTPMode

                nextlayer.layer = layers.HttpLayer(ctx, HTTPMode.transparent)
            return  # anything else: mitmproxy's defaults (raw TCP)
        try:
            hello = parse_client_hello(data)
        except ValueError:
            if not (await self.decide(ctx, False, ""))[0]:
                nextlayer.layer = Refuse(ctx)
            return
        if hello is None:
            return  # the ClientHello is not complete yet: asked again with more data
        sni = (hello.sni or "").lower()
        self.sni[ctx.client.id] = sni
        allow, terminate = await self.decide(ctx, True, sni)
        if not allow:
            nextlayer.layer = Refuse(ctx)
        elif not self.intercept and not terminate:
            nextlayer.layer = layers.TCPLayer(ctx)  # relayed as is; counted by tcp hooks

    async def decide(self, ctx: Any, tls: bool, sni: str, head: peek.Seen | None = None,
                     size: int = 0) -> tuple[bool, bool]:  # fmt: skip
        """(go on, terminate its TLS): the gateway's answer, asked once a connection."""
        known = self.asked.get(ctx.client.id)
        if known is not None:
            return known, False
        src, sport = ctx.client.peername[:2]
        dst, dport = ctx.server.address[:2]
        answer = await self.gateway.connection(str(src), int(sport), str(dst), int(dport),
                                               tls, sni, head, size)  # fmt: skip
        self.asked[ctx.client.id] = answer[0]
        return answer

    # -- where to connect -------------------------------------------------------------------
    async def server_connect(self, data: Any) -> None:
        if data.server.address is None:
            return
        host, port = data.server.address[:2]
        if FakeIPs.is_fake(str(host)):
            real = await self.gateway.real_address(str(host))
            if real is not None:
                data.server.address = (real, port)

    # -- request rules (plain HTTP, or HTTPS with interception): requestgate.py -------------
    async def requestheaders(self, flow: Any) -> None:
        """Judge the request (it may wait for a person: the event loop goes on); a
        refused one is answered 403 without contacting the server."""
        outcome = await self.gateway.request(seen_request(flow))
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
        self.gateway.log(
            LogEntry(
                EntryKind.TLS, proto="tcp",
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
        self.gateway.log(
            LogEntry(
                EntryKind.HTTP, proto="tcp",
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


class MitmMaster:
    """Runs mitmproxy's master in the worker's event loop."""

    def __init__(self, addon: SnitchAddon, listen_host: str, port: int, confdir: Path,
                 upstream_ca: str | None = None,
                 secrets: SecretsAddon | None = None) -> None:  # fmt: skip
        self.addon = addon
        self.listen_host = listen_host
        self.port = port
        self.confdir = confdir
        self.upstream_ca = upstream_ca
        self.secrets = secrets
        self.master: Any = None
        self.task: asyncio.Task[None] | None = None

    def start(self) -> asyncio.Task[None]:
        """Start the master; its task ends when mitmproxy stops."""
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
        self.task = asyncio.get_running_loop().create_task(self.master.run())
        return self.task
