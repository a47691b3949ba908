"""What a session's log takes: a rate per kind of line and a size cap, with a count of
what was dropped.

The sandbox decides how many lines its session logs (every lookup, every flow, every
garbage datagram is a line). Unbounded, a flood of denied lookups fills the disk, and
retention then deletes older sessions' logs to make room; capped naively, a flood fills
the cap and what the sandbox does next goes unlogged. So:

- lines of what did *not* leave (denied or held flows and lookups, garbage) are
  *noise*: each kind (``dns deny``, ``flow tcp deny``, ``event dropped bad DNS query``,
  ...) has its own token bucket (``rate`` lines a second, bursts of ``burst``), and
  together they stop at ``NOISE_SHARE`` of the cap;
- lines of what *left* (allowed flows and lookups, HTTP and TLS lines, which only
  allowed flows make) and the gateway's own events are not rate-limited and may use
  the whole cap, ``max_bytes``: a flood of noise never hides an allowed connection.

What is dropped is counted and said in the log itself: a summary line every few seconds
while lines are dropped, and one when the log closes (those lines may use a small
reserve beyond the cap).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

MAX_KEYS = 64  # kinds of line with their own bucket; the rest share one
NOISE_SHARE = 0.75  # of the cap: where lines of what did not leave stop
LEFT_KINDS = frozenset({"http", "tls"})  # made only for flows that were let through
SUMMARY_RESERVE = 64 * 1024  # bytes beyond the cap for the "dropped" summaries
OTHER = "other"

# The user's environment on the host (docs/log.md); the gateway gets the limits in its
# settings (snitch/core/settings.py).
ENV_MAX_MB = "CODERUN_LOG_SESSION_MAX_MB"
ENV_RATE = "CODERUN_LOG_RATE"
ENV_BURST = "CODERUN_LOG_BURST"


@dataclass(frozen=True, slots=True)
class LogLimits:
    """``max_bytes`` per session log (None: no cap); ``rate`` lines a second per kind of
    line, in bursts of up to ``burst`` (rate None or 0: no rate limit)."""

    max_bytes: int | None = 32 * 1024 * 1024
    rate: float | None = 200.0
    burst: int = 5000

    def __post_init__(self) -> None:
        if (self.max_bytes or 0) < 0 or (self.rate or 0) < 0 or self.burst < 1:
            raise ValueError(f"bad log limits: {self.max_bytes=} {self.rate=} {self.burst=}")

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> LogLimits:
        """From ``CODERUN_LOG_SESSION_MAX_MB``/``_RATE``/``_BURST`` ("0" = no limit);
        the defaults where unset. A bad value raises ValueError."""
        d = cls()
        mb = env.get(ENV_MAX_MB)
        max_bytes = int(float(mb) * 1024 * 1024) if mb else d.max_bytes
        rate = float(env[ENV_RATE]) if env.get(ENV_RATE) else d.rate
        burst = int(env[ENV_BURST]) if env.get(ENV_BURST) else d.burst
        return cls(max_bytes or None, rate or None, burst)


def line_kind(payload: Mapping[str, Any]) -> str:
    """The kind a line is counted under: ``dns deny``, ``flow tcp allow``, ``event
    gateway ready`` (an event's message up to its first colon)."""
    kind = str(payload.get("kind", ""))
    if kind == "event":
        return f"event {str(payload.get('message', '')).split(':', 1)[0][:40]}".rstrip()
    proto = str(payload.get("proto", ""))
    verdict = str(payload.get("verdict", ""))
    out = kind  # (no generator: this runs for every line)
    if proto and proto != kind:
        out = f"{out} {proto}" if out else proto
    if verdict:
        out = f"{out} {verdict}" if out else verdict
    return out


def left(payload: Mapping[str, Any]) -> bool:
    """A line of what left the sandbox (or of the gateway itself), not noise."""
    kind = payload.get("kind")
    if kind == "event":
        return str(payload.get("message", "")).startswith("gateway ")
    return payload.get("verdict") == "allow" or kind in LEFT_KINDS


class LogLimiter:
    """Admits or drops each line; counts the dropped ones by kind."""

    def __init__(self, limits: LogLimits, size: int = 0) -> None:
        self.limits = limits
        self.size = size  # bytes admitted so far (the log's size once written)
        self.dropped = 0  # in all
        self.dropped_by_cap = 0
        self.unreported: Counter[str] = Counter()  # dropped since the last summary
        self._since = time.monotonic()
        self._buckets: dict[str, list[float]] = {}  # kind -> [tokens, last refill]

    def admit(self, payload: Mapping[str, Any], nbytes: int) -> bool:
        noise = not left(payload)
        cap = self.limits.max_bytes
        if not noise and (cap is None or self.size + nbytes <= cap):
            self.size += nbytes  # what left: never rate-limited, its kind not needed
            return True
        kind = line_kind(payload)
        rate = self.limits.rate
        if noise and rate is not None:
            now = time.monotonic()
            bucket = self._buckets.get(kind)
            if bucket is None:
                if len(self._buckets) >= MAX_KEYS:
                    kind = OTHER
                    bucket = self._buckets.get(OTHER)
                if bucket is None:
                    bucket = self._buckets[kind] = [float(self.limits.burst), now]
            tokens = min(float(self.limits.burst), bucket[0] + (now - bucket[1]) * rate)
            bucket[1] = now
            if tokens < 1.0:
                bucket[0] = tokens
                return self._drop(kind)
            bucket[0] = tokens - 1.0
        if cap is not None and self.size + nbytes > (cap * NOISE_SHARE if noise else cap):
            self.dropped_by_cap += 1
            return self._drop(kind)
        self.size += nbytes
        return True

    def _drop(self, kind: str) -> bool:
        self.dropped += 1
        self.unreported[kind] += 1
        return False

    def summary(self, session: str, final: bool = False) -> dict[str, Any] | None:
        """The event line saying what was dropped since the last one, or None (nothing
        dropped; or the reserve beyond the cap half used: the rest is for the ``final``
        one, which also comes when nothing new was dropped but something was)."""
        if not self.unreported and not (final and self.dropped):
            return None
        cap = self.limits.max_bytes
        if not final and cap is not None and self.size > cap + SUMMARY_RESERVE // 2:
            return None  # the counts go into the final summary
        now = time.monotonic()
        count = sum(self.unreported.values())
        detail = ", ".join(f"{kind}: {n}" for kind, n in self.unreported.most_common(8))
        message = (
            f"log limit: dropped {count} lines in the last {now - self._since:.1f} s"
            + (f" ({detail})" if detail else "")
            + f"; {self.dropped} in all"
            + (f", {self.dropped_by_cap} over the size cap" if self.dropped_by_cap else "")
        )
        self.unreported.clear()
        self._since = now
        return {"kind": "event", "time": time.time(), "session": session, "message": message,
                "reason": "log-limit", "dropped": count}  # fmt: skip
