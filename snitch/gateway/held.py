"""What ask mode holds for a person (snitch/gateway/asker.py): one pending item and the
connections, opens or requests that wait for its answer."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from snitch.core.fileask import file_query
from snitch.core.model import Decision, FlowKey, Pending, PendingKind, Proto, Query
from snitch.core.pathgrammar import url_path
from snitch.gateway.queue import QueuedPacket

# What makes two connections "the same destination": proto, dst, dport, names, claimed.
GroupKey = tuple[str, str, int, tuple[str, ...], str]


@dataclass
class Held:
    item: Pending
    group: GroupKey
    flows: list[tuple[QueuedPacket, FlowKey]] = field(default_factory=list)
    # a file or request item: the answers waited for (one per open/request joined)
    waiters: list[asyncio.Future[Decision]] = field(default_factory=list)

    def query(self) -> Query:
        item = self.item
        if item.kind == PendingKind.FILE:
            return file_query(item)
        if item.kind == PendingKind.REQUEST:
            return Query(Proto.TCP, item.dst, item.dport, tuple(item.names),
                         path=url_path(item.url), method=item.method)  # fmt: skip
        return Query(Proto(item.proto), item.dst, item.dport, tuple(item.names),
                     exe=item.exe or None)  # fmt: skip
