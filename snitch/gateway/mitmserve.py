"""The gateway's side of its mitmproxy worker's channel: each ask is answered on the
gateway's loop by the code that decides everything else (proxyjudge.py for
connections, requestgate.py for requests), in a task of its own, so a request held
for a person waits without holding anything else up; log lines go to the gateway's
writer with the session and the rule's description filled in here."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any

from snitch.core.logentry import LogEntry
from snitch.core.model import FlowKey, Proto
from snitch.core.settings import SECRETS_FILE
from snitch.gateway import peek
from snitch.gateway.mitmchannel import Channel, ChannelClosed
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
    Verify,
    VerifyAnswer,
)
from snitch.gateway.proxyjudge import ProxyJudge
from snitch.gateway.requestgate import RequestGate
from snitch.gateway.secrets import read_values

if TYPE_CHECKING:
    from snitch.gateway.flowgate import FlowGate

log = logging.getLogger(__name__)


class MitmServer:
    def __init__(self, gate: FlowGate, judge: ProxyJudge,
                 secrets_path: Path = Path(SECRETS_FILE)) -> None:  # fmt: skip
        self.gate = gate
        self.judge = judge
        self.requests = RequestGate(gate)
        self.secrets_path = secrets_path
        self.values: dict[str, str] | None = None
        self.channel: Channel | None = None
        self.ready = asyncio.Event()
        self.tasks: set[asyncio.Task[None]] = set()

    def on_message(self, message: Message) -> None:
        if isinstance(message, Log):
            self.log(message.entry)
        elif isinstance(message, Closed):
            self.judge.closed(message.src, message.sport)
        elif isinstance(message, Ready):
            self.ready.set()
        else:
            self._spawn(self.answer(message))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def answer(self, message: Message) -> None:
        try:
            reply = await self.reply(message)
        except Exception:
            log.exception("mitmproxy worker: %s not answered", message.KIND)
            return
        if reply is not None and self.channel is not None:
            with contextlib.suppress(ChannelClosed):
                self.channel.send(reply)

    async def reply(self, message: Message) -> Message | None:
        judge = self.judge
        if isinstance(message, Connection):
            key = FlowKey(Proto.TCP, message.src, message.sport, message.dst, message.dport)
            allow = await judge.connection(key, message.sni)
            if allow and message.head:
                seen = peek.Seen(message.head, host=message.head_host,
                                 partial=message.head_partial)  # fmt: skip
                allow = not judge.unreadable(key, seen, message.size)
            terminate = allow and message.tls and judge.terminates(message.sni, message.dst)
            return ConnectionAnswer(message.id, allow, terminate)
        if isinstance(message, Request):
            return RequestAnswer(message.id, await self.requests.judge(message.seen))
        if isinstance(message, Address):
            return AddressAnswer(message.id, judge.real_address(message.dst))
        if isinstance(message, Verify):
            return VerifyAnswer(message.id, judge.verified(message.host, message.dst))
        if isinstance(message, SecretValues):
            return SecretValuesAnswer(message.id, self.secret_values())
        log.warning("mitmproxy worker: unexpected %s", message.KIND)
        return None

    def secret_values(self) -> dict[str, str] | None:
        """The run's values, read once from the host's file (then removed)."""
        if self.values is None:
            read = read_values(self.secrets_path)
            if read is not None:
                self.values = {k: v.decode() for k, v in read.items()}
        return self.values

    def log(self, entry: LogEntry) -> None:
        rule = self.gate.rules.describe(entry.rule_id) if entry.rule_id is not None else ""
        self.gate.bus.log(dataclasses.replace(entry, session=self.gate.session, rule=rule))

    def close(self) -> None:
        """The worker is gone: what it asked is answered to nobody."""
        for task in list(self.tasks):
            task.cancel()
