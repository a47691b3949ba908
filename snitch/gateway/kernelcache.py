"""Decided destinations at kernel speed: an nftables map the gateway process owns.

Once a lasting rule (enforce mode; not ``once``) has decided a destination (address,
protocol, port), the verdict goes into the map ``verdicts`` of the table ``coderun_cache``
with an element timeout: the earliest of the next rule expiry, the expiry of the
address's names and ``MAX_TIMEOUT``. A chain hooked before the iptables mangle table
(priority mangle - 10) looks every new sandbox flow up there (TCP: a SYN; UDP:
conntrack NEW) and, on a hit, sets the packet's mark from the map and sends a copy of
its headers to NFLOG group ``LOG_GROUP``:

- ``CACHED_MARK`` tells the queue chain (netfilter.py) to let the packet pass unqueued;
- ``DENY_MARK`` (netfilter.py) makes the FORWARD/INPUT chains refuse it, as for a
  queued packet the gateway refused;
- the upper bits number the cache entry (``ENTRY_SHIFT``): the gateway's NFLOG reader
  (nflog.py) finds the decision, names and verdict the flow was given and logs it
  exactly as the queue path does, even after the map was flushed.

Every copy carries a sequence number (nflog.py): lost copies are counted, never silent.
While they are being lost the cache steps aside (cacheguard.py): the map is flushed and
takes no element, so new flows are queued again, where a slow gateway holds them back
instead of losing their lines. To know when the reader has caught up, the gateway sends
itself a marker (a UDP datagram to ``127.0.0.1:SYNC_PORT``, over loopback) that the
chain copies to the same group with mark ``SYNC_MARK`` and drops: every copy numbered
before the marker has been read or counted as lost by the time it is read.

The map is flushed whenever the rules in force change (an edit, a rule's expiry) and
whenever an address gets or loses a name; the element timeouts end each verdict at the
first expiry it depends on. Fail closed: the table is created with ``flags owner`` over
the gateway's own netlink socket (libnftables in-process, through ctypes), so the
kernel removes it when the gateway process dies, however it dies; what is left is the
queue without a listener, which drops everything. A gateway that hangs (frozen, or its
event loop stuck) stops renewing the element of the set ``alive`` that every lookup
needs: within ``ALIVE_MS`` the map decides nothing, and new flows wait in the queue.
(Until then the destinations it holds are reached, plain-HTTP ones too while no deny
rule names a host: their heads are not held for reading, ``GLANCE_MARK``.)
"""

from __future__ import annotations

import ctypes
import ctypes.util
import ipaddress
import logging
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from snitch.core.model import Action, Decision, FlowKey, Proto
from snitch.gateway.netfilter import CACHED_MARK, DENY_MARK

log = logging.getLogger(__name__)
TABLE = "coderun_cache"
MAP = "verdicts"
ALIVE = "alive"  # holds one element while the gateway's event loop runs
ALIVE_MS = 500  # ... for this long after its last heartbeat
BEAT_SECONDS = 0.15
LOG_GROUP = 7  # NFLOG group of the flows the map decided
LOG_SNAPLEN = 80  # bytes of each such packet copied: the IPv4 and TCP/UDP headers
ENTRY_SHIFT = 8
ENTRIES_KEPT = 1 << 14  # entries the log can still name after their element is gone
MAX_TIMEOUT = 300.0  # seconds a verdict stays in the kernel at most
MIN_TIMEOUT = 1.0  # shorter-lived verdicts are not worth an element
SYNC_PORT = 9  # the marker's (the gateway's own datagram over loopback; dropped)
SYNC_MARK = 0x80  # the marker's mark: entry 0, which no verdict has
_IFNAME = re.compile(r"[A-Za-z0-9_.@-]{1,15}")


class KernelCacheError(RuntimeError):
    pass


class Nft(Protocol):
    """Runs nft commands (libnftables in the gateway; a recorder in tests)."""

    def run(self, commands: str) -> None: ...


class LibNftables:
    """libnftables through ctypes: one context, hence one netlink socket, for the
    gateway's lifetime (an ``owner`` table lives exactly as long as it)."""

    def __init__(self) -> None:
        name = ctypes.util.find_library("nftables") or "libnftables.so.1"
        try:
            lib = ctypes.CDLL(name)
        except OSError as exc:
            raise KernelCacheError(f"libnftables is missing: {exc}") from exc
        lib.nft_ctx_new.restype = ctypes.c_void_p
        lib.nft_ctx_new.argtypes = [ctypes.c_uint32]
        lib.nft_ctx_buffer_error.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_buffer_output.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_get_error_buffer.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_get_error_buffer.restype = ctypes.c_char_p
        lib.nft_run_cmd_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        lib.nft_run_cmd_from_buffer.restype = ctypes.c_int
        ctx = lib.nft_ctx_new(0)
        if not ctx:
            raise KernelCacheError("nft_ctx_new failed")
        lib.nft_ctx_buffer_error(ctx)
        lib.nft_ctx_buffer_output(ctx)
        self._lib, self._ctx = lib, ctx

    def run(self, commands: str) -> None:
        if self._lib.nft_run_cmd_from_buffer(self._ctx, commands.encode()) != 0:
            error = (self._lib.nft_ctx_get_error_buffer(self._ctx) or b"").decode(errors="replace")
            raise KernelCacheError(f"nft: {error.strip()[-300:]}")


def table_text(sandbox_if: str) -> str:
    """The table: the map and the chain that consults it for new sandbox flows."""
    if not _IFNAME.fullmatch(sandbox_if):
        raise KernelCacheError(f"not an interface name: {sandbox_if!r}")
    # Sandbox packets come with mark 0: "meta mark @alive" holds while 0x0 is there.
    hit = (f"meta mark @{ALIVE} meta mark set ip daddr . meta l4proto . th dport map @{MAP} "
           f"log group {LOG_GROUP} snaplen {LOG_SNAPLEN}")  # fmt: skip
    return "\n".join(
        [
            f"table ip {TABLE} {{",
            "  flags owner",
            f"  map {MAP} {{ type ipv4_addr . inet_proto . inet_service : mark; flags timeout; }}",
            f"  set {ALIVE} {{ type mark; flags timeout; }}",
            "  chain prerouting {",
            "    type filter hook prerouting priority mangle - 10; policy accept;",
            f'    iifname "{sandbox_if}" tcp flags & (fin|syn|rst|ack) == syn {hit}',
            f'    iifname "{sandbox_if}" meta l4proto udp ct state new {hit}',
            f'    iifname "lo" ip daddr 127.0.0.1 udp dport {SYNC_PORT} '
            f"meta mark set 0x{SYNC_MARK:x} log group {LOG_GROUP} snaplen {LOG_SNAPLEN} drop",
            "  }",
            "}",
            "",
        ]
    )


@dataclass(frozen=True)
class Entry:
    """What a flow the map decided is logged with."""

    decision: Decision
    verdict: str  # the log's verdict when it is not the action's ("rebind")
    names: tuple[str, ...]
    rules_version: int  # the rule book's when decided


class KernelCache:
    def __init__(self, nft: Nft, sandbox_if: str) -> None:
        self.nft = nft
        self.sandbox_if = sandbox_if
        self.entries: dict[int, Entry] = {}  # insertion order: the oldest go first
        # Elements go to the kernel in one nft command per turn of the event loop
        # (``schedule``: loop.call_soon; None: at once): an add costs ~0.5 ms alone.
        self.schedule: Callable[[Callable[[], None]], object] | None = None
        self._pending: list[str] = []
        self._in_kernel: dict[tuple[str, str, int], float] = {}  # -> element's end (wall)
        self._next = 1
        self.added = 0
        self.flushes = 0
        self.elements = 0  # added since the last flush
        self.aside = False  # stepped aside (cacheguard.py): the map takes no element

    def install(self) -> None:
        self.nft.run(table_text(self.sandbox_if))
        self.heartbeat()

    def heartbeat(self) -> None:
        """The map decides for another ``ALIVE_MS`` (call every ``BEAT_SECONDS``): a hung
        gateway (frozen, or its loop stuck) stops it within that, as a dead one at once."""
        # Two runs, not one: libnftables reads the whole ruleset (iptables-nft's tables
        # and their xt rules) before a buffer of several commands, ~3-6 ms each time;
        # one command alone reads only its set (0.1-0.2 ms). Between the two, the map
        # decides nothing for a moment: new flows are queued meanwhile.
        self.nft.run(f"destroy element ip {TABLE} {ALIVE} {{ 0x0 }}")
        self.nft.run(f"add element ip {TABLE} {ALIVE} {{ 0x0 timeout {ALIVE_MS}ms }}")

    def add(
        self, key: FlowKey, entry: Entry, until: float, extra_mark: int = 0,
        now: float | None = None,
    ) -> bool:  # fmt: skip
        """Put a verdict for ``key``'s destination in the map until ``until`` (wall
        time; at most ``MAX_TIMEOUT`` from now), with ``extra_mark`` bits on its packets
        (``PEEK_MARK``). False when not worth it."""
        if self.aside or key.proto not in (Proto.TCP, Proto.UDP):
            return False
        now = time.time() if now is None else now
        timeout = min(until - now, MAX_TIMEOUT)
        if not timeout >= MIN_TIMEOUT or math.isnan(timeout):
            return False
        where = (key.dst, str(key.proto), int(key.dport))
        if self._in_kernel.get(where, 0.0) > now:
            return False  # there already (flows queued before it was added)
        number = self._next
        self._next = self._next % ((1 << (32 - ENTRY_SHIFT)) - 1) + 1
        deny = DENY_MARK if entry.decision.action is not Action.ALLOW else 0
        mark = (number << ENTRY_SHIFT) | CACHED_MARK | deny | (extra_mark & 0xFC)
        dst = str(ipaddress.IPv4Address(key.dst))  # never text from elsewhere in a command
        ms = int(timeout * 1000)
        self._pending.append(f"{dst} . {key.proto} . {int(key.dport)} timeout {ms}ms : 0x{mark:x}")
        self._in_kernel[where] = now + ms / 1000
        if len(self._in_kernel) > ENTRIES_KEPT:
            del self._in_kernel[next(iter(self._in_kernel))]
        self.entries[number] = entry
        if len(self.entries) > ENTRIES_KEPT:
            del self.entries[next(iter(self.entries))]
        self.added += 1
        self.elements += 1
        if self.schedule is None:
            self.send()
        elif len(self._pending) == 1:
            self.schedule(self.send)
        return True

    def send(self) -> None:
        """The elements added since the last call, in one command."""
        pending, self._pending = self._pending, []
        if not pending:
            return
        try:
            self.nft.run(f"add element ip {TABLE} {MAP} {{ {', '.join(pending)} }}")
        except KernelCacheError:  # one refused (there already?): the others go alone
            for element in pending:
                try:
                    self.nft.run(f"add element ip {TABLE} {MAP} {{ {element} }}")
                except KernelCacheError as exc:
                    log.warning("kernel verdict cache: %s", exc)

    def clear(self) -> None:
        """Forget every verdict in the kernel, and those on their way (the entries
        stay for the log)."""
        self._pending.clear()
        self._in_kernel.clear()
        if self.elements:
            self.nft.run(f"flush map ip {TABLE} {MAP}")
            self.elements = 0
            self.flushes += 1

    def step_aside(self) -> None:
        """Decide nothing until ``resume``: the map is flushed and takes no element."""
        self.aside = True
        self.clear()

    def resume(self) -> None:
        self.aside = False

    def entry(self, mark: int) -> Entry | None:
        return self.entries.get(mark >> ENTRY_SHIFT)
