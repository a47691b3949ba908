"""The baseline: a bare accept-everything NFQUEUE handler in the gateway's place.

Runs inside a container of the coderun-gateway image (as its entrypoint, see
``topology.gateway_variant_image``) started by an ordinary coderun Session, so the network
topology, the sysctls and the iptables rules (``snitch.gateway.netfilter.apply``, the same NEW ->
NFQUEUE rule) are the real gateway's. Only the handler differs: every packet is
accepted, nothing is parsed, decided or logged. It binds the queue with the real
gateway's settings (``snitch.gateway.queue``) and reads it the same way (asyncio,
``run(block=False)`` from ``loop.add_reader``).

It reports like the gateway (``gateway.json`` with ``state: ready`` and its pid, which
the Session waits for) and writes its verdict count to ``bare.json`` every 0.2 s, with
timers like timed_gateway.py's: ``read`` (one ``run(block=False)``) and
``verdict_syscall`` (``pkt.accept()``), as ``[calls, total ns]``.

With ``--router`` it is a second baseline, for bulk TCP: the gateway container as a plain
Linux router, no coderun rules at all (no NFQUEUE, no filter chains), only the egress
MASQUERADE every gateway needs. What bulk TCP loses on that path is the extra routed hop
itself (a second veth pair and bridge, routing, conntrack).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from netfilterqueue import COPY_PACKET, NetfilterQueue

from snitch.core.settings import GatewaySettings
from snitch.gateway import netfilter
from snitch.gateway.queue import COPY_RANGE, MAX_QUEUED


def _write(path: Path, data: dict[str, object]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"time": time.time(), **data}))
    tmp.replace(path)


async def plain_router(folder: Path, egress: str) -> None:
    subprocess.run(
        ["iptables", "-t", "nat", "-A", "POSTROUTING", "-o", egress, "-j", "MASQUERADE"],
        check=True,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    _write(folder / "gateway.json", {"state": "ready", "pid": os.getpid(), "router": True})
    await stop.wait()


async def main() -> None:
    settings = GatewaySettings.from_env(os.environ)
    folder = Path(settings.data) / "sessions" / settings.session
    ifs = netfilter.discover(settings.egress_subnet, settings.egress_gateway)
    if "--router" in sys.argv:
        await plain_router(folder, ifs.egress)
        return
    netfilter.apply(ifs)
    verdicts = 0
    timing = {"read": [0, 0], "verdict_syscall": [0, 0]}  # label: [calls, ns]
    now = time.perf_counter_ns

    def handler(pkt: object) -> None:
        nonlocal verdicts
        verdicts += 1
        t0 = now()
        pkt.accept()  # type: ignore[attr-defined]
        s = timing["verdict_syscall"]
        s[0] += 1
        s[1] += now() - t0

    def read() -> None:
        t0 = now()
        nfq.run(block=False)
        s = timing["read"]
        s[0] += 1
        s[1] += now() - t0

    nfq = NetfilterQueue()
    nfq.bind(netfilter.QUEUE_NUM, handler, max_len=MAX_QUEUED, mode=COPY_PACKET,
             range=COPY_RANGE)  # fmt: skip
    loop = asyncio.get_running_loop()
    loop.add_reader(nfq.get_fd(), read)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    _write(folder / "gateway.json", {"state": "ready", "pid": os.getpid(), "bare": True})
    while not stop.is_set():
        _write(folder / "bare.json", {"verdicts": verdicts, "timing": timing})
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.2)
    loop.remove_reader(nfq.get_fd())
    nfq.unbind()
    _write(folder / "bare.json", {"verdicts": verdicts, "timing": timing, "stopped": True})


if __name__ == "__main__":
    asyncio.run(main())
