"""The real gateway with timers around its packet path: where each verdict's time goes.

Runs inside a container of the coderun-gateway image (as its entrypoint, built by
``topology.gateway_variant_image``), started by an ordinary Session: it wraps a few
snitch functions with ``perf_counter_ns`` timers, then runs ``snitch.gateway.main.main()``
unchanged. Every 0.25 s it writes ``timing.json`` to the session's folder:
``{label: [calls, total ns]}``. Timers cost well under a microsecond a call, so this is
for the breakdown, not for the throughput figure (the benchmark measures that on the
unmodified gateway).

- ``read``: one ``PacketQueue._read`` (netlink receive + the callbacks it runs)
- ``on_packet``: one packet's whole handling in FlowGate
- ``verdict_syscall``: ``pkt.accept()`` alone (netlink verdict; the kernel re-injects
  the packet within it)
- ``parse_flow``, ``rules.verdict``, ``log_flow`` (building the entry, the event bus,
  the log writer's ``json.dumps``, the control API's listeners), ``bus.publish``
"""

from __future__ import annotations

import inspect
import json
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from snitch.core.settings import GatewaySettings
from snitch.gateway import events, flowgate, queue, rulebook
from snitch.gateway import main as gateway_main

STATS: dict[str, list[int]] = {}
now = time.perf_counter_ns


def _add(label: str, ns: int) -> None:
    s = STATS.setdefault(label, [0, 0])
    s[0] += 1
    s[1] += ns


def timed(owner: Any, name: str, label: str) -> None:
    """Wrap ``owner.name`` (function, method or staticmethod) with a timer."""
    static = isinstance(inspect.getattr_static(owner, name), staticmethod)
    orig: Callable[..., Any] = getattr(owner, name)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        t0 = now()
        try:
            return orig(*args, **kwargs)
        finally:
            _add(label, now() - t0)

    setattr(owner, name, staticmethod(wrapper) if static else wrapper)


class TimedPacket:
    """Stands in for the netfilterqueue packet to time the verdict call alone."""

    __slots__ = ("_pkt",)

    def __init__(self, pkt: Any) -> None:
        self._pkt = pkt

    def accept(self) -> None:
        t0 = now()
        self._pkt.accept()
        _add("verdict_syscall", now() - t0)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pkt, name)


def _wrap_on_packet() -> None:
    orig = flowgate.FlowGate.on_packet

    def on_packet(self: Any, pkt: Any) -> None:
        t0 = now()
        try:
            orig(self, TimedPacket(pkt))
        finally:
            _add("on_packet", now() - t0)

    flowgate.FlowGate.on_packet = on_packet  # type: ignore[method-assign]


def _writer() -> None:
    settings = GatewaySettings.from_env(os.environ)
    path = Path(settings.data) / "sessions" / settings.session / "timing.json"
    while True:
        time.sleep(0.25)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(STATS))
        tmp.replace(path)


def main() -> None:
    timed(queue.PacketQueue, "_read", "read")
    _wrap_on_packet()
    timed(flowgate, "parse_flow", "parse_flow")
    timed(rulebook.RuleBook, "verdict", "rules.verdict")
    timed(flowgate.FlowGate, "log_flow", "log_flow")
    timed(events.EventBus, "publish", "bus.publish")
    threading.Thread(target=_writer, daemon=True).start()
    gateway_main.main()


if __name__ == "__main__":
    main()
