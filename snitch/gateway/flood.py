"""Ask mode's guard against flooding the person who decides.

A sandbox can open connections far faster than anyone can read prompts, and it knows
every deadline. So the asker (snitch/gateway/asker.py):

- groups repeats: connections to the same destination (protocol, address, port, names,
  claimed name) join one waiting item (``Pending.flows``) instead of making new ones;
- caps the waiting items at ``max_pending`` (``coderun run --max-pending``), and the
  connections one item holds at ``MAX_FLOWS_PER_ITEM``;
- rate-limits new items with a token bucket: a burst of ``max_pending``, then
  ``PROMPT_RATE`` per second.

A connection over the cap or the rate is **refused at once** (a TCP RST, like any
denial) with a reason saying why, never held without a prompt: it does not sit in the
kernel's queue, and the program sees the refusal instead of a hang. The counts are in
``PromptCounts`` (snitch/core/model.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from snitch.core.settings import PROMPT_RATE

MAX_FLOWS_PER_ITEM = 64  # connections one item holds (a parallel download opens a few)


def refused_full(max_pending: int) -> str:
    return f"ask: refused at once, {max_pending} items already wait for a decision (--max-pending)"


def refused_item_full() -> str:
    return f"ask: refused at once, its item already holds {MAX_FLOWS_PER_ITEM} connections"


def refused_rate() -> str:
    return f"ask: refused at once, new items came faster than {PROMPT_RATE:g} a second"


class TokenBucket:
    """``take()`` is True at most ``burst`` times at once, then ``rate`` times a second."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic):
        self.rate = rate
        self.burst = float(max(burst, 1))
        self.clock = clock
        self.tokens = self.burst
        self.stamp = clock()

    def take(self) -> bool:
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True
