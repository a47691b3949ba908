"""The gateway's mitmproxy worker: ``python3 -m snitch.gateway.mitmworker FD``, a child
of the gateway in its container, with its own event loop (mitmproxy's proxied requests
never wait in line with the gateway's verdicts, nor they with them).

``FD`` is its end of a socketpair (mitmchannel.py). The first message is ``Start``
(how to run mitmproxy); the worker answers ``Ready`` once it listens. From then on its
addons ask the gateway (``GatewayClient``) about every connection and request and send
it their log lines. When the channel closes (the gateway is gone or stopping) the
worker exits at once: nothing is decided without the gateway.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import sys
from pathlib import Path

from snitch.core.logentry import LogEntry
from snitch.core.settings import SecretBinding
from snitch.gateway import peek
from snitch.gateway.mitm import MitmMaster, SnitchAddon
from snitch.gateway.mitmchannel import Channel
from snitch.gateway.mitmwire import (
    Address,
    AddressAnswer,
    Closed,
    Connection,
    ConnectionAnswer,
    Log,
    Message,
    Ready,
    Request,
    RequestAnswer,
    SecretValues,
    SecretValuesAnswer,
    Start,
    Verify,
    VerifyAnswer,
)
from snitch.gateway.requestgate import Outcome, SeenRequest
from snitch.gateway.secrets import SecretsAddon

log = logging.getLogger("snitch.gateway.mitmworker")
GONE_EXIT = 0  # the channel closed: the gateway stopped (or died)
FAILED_EXIT = 3  # mitmproxy failed or stopped by itself


class GatewayClient:
    """The worker's questions to the gateway, over the channel."""

    def __init__(self, channel: Channel) -> None:
        self.channel = channel

    async def connection(self, src: str, sport: int, dst: str, dport: int, tls: bool,
                         sni: str, head: peek.Seen | None = None,
                         size: int = 0) -> tuple[bool, bool]:  # fmt: skip
        ask = Connection(self.channel.next_id(), src, sport, dst, dport, tls, sni,
                         head.kind if head else "", head.host if head else "",
                         head.partial if head else False, size)  # fmt: skip
        answer = await self.channel.ask(ask, ConnectionAnswer)
        return answer.allow, answer.terminate

    async def request(self, seen: SeenRequest) -> Outcome | None:
        answer = await self.channel.ask(Request(self.channel.next_id(), seen), RequestAnswer)
        return answer.outcome

    async def real_address(self, dst: str) -> str | None:
        answer = await self.channel.ask(Address(self.channel.next_id(), dst), AddressAnswer)
        return answer.real

    async def verified(self, host: str, dst: str) -> bool:
        answer = await self.channel.ask(Verify(self.channel.next_id(), host, dst), VerifyAnswer)
        return answer.verified

    async def secret_values(self) -> dict[str, bytes] | None:
        ask = SecretValues(self.channel.next_id())
        answer = await self.channel.ask(ask, SecretValuesAnswer)
        if answer.values is None:
            return None
        return {name: value.encode() for name, value in answer.values.items()}

    def closed(self, src: str, sport: int) -> None:
        self.channel.send(Closed(src, sport))

    def log(self, entry: LogEntry) -> None:
        self.channel.send(Log(entry))


class Worker:
    def __init__(self) -> None:
        self.start: asyncio.Future[Start] | None = None
        self.channel = Channel(self.on_message, self.gone)

    def on_message(self, message: Message) -> None:
        if isinstance(message, Start) and self.start is not None and not self.start.done():
            self.start.set_result(message)
        else:
            log.warning("unexpected %s from the gateway", message.KIND)

    @staticmethod
    def gone() -> None:
        os._exit(GONE_EXIT)  # nothing of mitmproxy's state is worth a clean shutdown

    async def run(self, sock: socket.socket) -> None:
        """Serve until mitmproxy stops (or the channel closes: ``gone``)."""
        try:
            await self.serve(sock)
        except Exception:
            log.exception("mitmproxy worker failed")
        os._exit(FAILED_EXIT)  # not through asyncio's shutdown: that would close the channel

    async def serve(self, sock: socket.socket) -> None:
        self.start = asyncio.get_running_loop().create_future()
        await self.channel.open(sock)
        start = await self.start
        gateway = GatewayClient(self.channel)
        addon = SnitchAddon(gateway, start.intercept, frozenset(start.tls_ports))
        bindings = [SecretBinding(b["name"], b["placeholder"], tuple(b["hosts"]))
                    for b in start.bindings]  # fmt: skip
        secrets = SecretsAddon(gateway, bindings) if bindings else None
        master = MitmMaster(addon, start.listen_host, start.port, Path(start.confdir),
                            start.upstream_ca, secrets)  # fmt: skip
        running = master.start()
        ready = asyncio.get_running_loop().create_task(addon.ready.wait())
        await asyncio.wait({ready, running}, return_when=asyncio.FIRST_COMPLETED)
        if ready.done():
            self.channel.send(Ready())
            await asyncio.wait({running})
        ready.cancel()
        log.warning("mitmproxy stopped")


def main() -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr
    )
    os.umask(0o077)
    sock = socket.socket(fileno=int(sys.argv[1]))
    asyncio.run(Worker().run(sock))


if __name__ == "__main__":
    main()
