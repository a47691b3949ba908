"""A second baseline for bulk TCP: the gateway container as a plain Linux router.

Runs in the gateway's place like ``bare_handler.py`` (same image, same Session topology,
same sysctls and default route) but installs no coderun rules at all: no NFQUEUE, no
filter chains, only the egress MASQUERADE every gateway needs. What bulk TCP loses on
this path is the cost of the extra routed hop itself (a second veth pair and bridge,
routing, conntrack), which no rule set or handler in the gateway can win back.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time
from pathlib import Path

from snitch import netfilter


def _write(path: Path, data: dict[str, object]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"time": time.time(), **data}))
    tmp.replace(path)


async def main() -> None:
    folder = Path(os.environ.get("CODERUN_DATA", "/data")) / "sessions"
    folder = folder / os.environ["CODERUN_SESSION"]
    ifs = netfilter.discover(
        os.environ["CODERUN_EGRESS_SUBNET"], os.environ.get("CODERUN_EGRESS_GATEWAY") or None
    )
    subprocess.run(
        ["iptables", "-t", "nat", "-A", "POSTROUTING", "-o", ifs.egress, "-j", "MASQUERADE"],
        check=True,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    _write(folder / "gateway.json", {"state": "ready", "pid": os.getpid(), "router": True})
    await stop.wait()


if __name__ == "__main__":
    asyncio.run(main())
