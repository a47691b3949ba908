"""``python3 -m snitch.gateway.selftest``: can this kernel do what the gateway needs?

Run by ``coderun doctor`` in a throwaway gateway container that has no network but its
own loopback, with NET_ADMIN, and this package bind-mounted as in a session:

- **nfqueue**: a rule like the gateway's (``-m conntrack --ctstate NEW -j NFQUEUE``, on
  loopback only) queues a UDP datagram the probe sends to itself, and a listener bound
  to that queue sees it within a deadline.
- **conntrack**: conntrack's netlink interface lists that datagram's flow (what the
  gateway uses to cut flows when a rule is revoked).
- **mount**: the contents of ``/probe/token``, a file the host put there (a bind mount
  that shows the host's file proves a local engine).

Prints one JSON object on stdout: ``{"nfqueue": {"ok": ..., "detail": ...}, ...}``.
Nothing leaves the container: the datagram goes to its own loopback.
"""

from __future__ import annotations

import json
import select
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

QUEUE = 7
PORT = 9  # discard; nothing listens: the datagram only has to be seen by the queue
DEADLINE = 3.0
TOKEN = Path("/probe/token")


def _result(ok: bool, detail: str) -> dict[str, Any]:
    return {"ok": ok, "detail": detail[-400:]}


def _run(cmd: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=10)


def check_nfqueue() -> dict[str, Any]:
    rule = ["-o", "lo", "-p", "udp", "--dport", str(PORT), "-m", "conntrack",
            "--ctstate", "NEW", "-j", "NFQUEUE", "--queue-num", str(QUEUE)]  # fmt: skip
    added = _run(["iptables", "-t", "mangle", "-A", "OUTPUT", *rule])
    if added.returncode != 0:
        return _result(False, f"iptables could not add an NFQUEUE rule: {added.stderr.strip()}")
    try:
        from netfilterqueue import NetfilterQueue
    except ImportError as exc:
        return _result(False, f"netfilterqueue is missing from the gateway image: {exc}")
    seen: list[int] = []

    def handler(packet: Any) -> None:
        seen.append(len(packet.get_payload()))
        packet.accept()

    nfq: Any = NetfilterQueue()
    try:
        nfq.bind(QUEUE, handler)
    except OSError as exc:
        return _result(False, f"cannot bind NFQUEUE {QUEUE}: {exc}")
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.sendto(b"coderun selftest", ("127.0.0.1", PORT))
        fd = nfq.get_fd()
        end = time.monotonic() + DEADLINE
        while not seen and time.monotonic() < end:
            ready, _, _ = select.select([fd], [], [], max(end - time.monotonic(), 0))
            if ready:
                nfq.run(block=False)
    finally:
        nfq.unbind()
    if not seen:
        return _result(False, f"a queued packet did not reach the listener in {DEADLINE:.0f}s")
    return _result(True, f"a NEW flow was queued and judged ({seen[0]} bytes)")


def check_conntrack() -> dict[str, Any]:
    listed = _run(["conntrack", "-L", "-p", "udp", "--dport", str(PORT)])
    if listed.returncode != 0:
        return _result(False, f"conntrack -L failed: {listed.stderr.strip()}")
    if f"dport={PORT}" not in listed.stdout:
        return _result(False, "conntrack does not list the probe's flow")
    return _result(True, "conntrack lists and tracks flows")


def check_mount() -> dict[str, Any]:
    try:
        return _result(True, TOKEN.read_text().strip())
    except OSError as exc:
        return _result(False, f"cannot read {TOKEN}: {exc}")


def main() -> None:
    report = {"mount": check_mount(), "nfqueue": check_nfqueue()}
    report["conntrack"] = check_conntrack()
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main()
