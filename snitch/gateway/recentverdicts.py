"""What the flow gate remembers of the verdicts it gave, so as not to judge again.

``RetransmittedSyns``: TCP flows decided in the last few seconds, by 5-tuple. A
retransmitted SYN (queued while the verdict was on its way) repeats the SYN's sequence
number and gets the same verdict, no second log line; a new connection reusing the
5-tuple has another one and is judged anew.

``KeptVerdicts`` (enforce and audit): a destination's verdict and names, kept while the
rule book and the name table are the same versions and no rule or name involved expired.
"""

from __future__ import annotations

import time
from collections import deque

from snitch.core.model import Decision, FlowKey, Proto

RETRANSMIT_SECONDS = 3.0  # a SYN is retransmitted after 1 s, then 3 s
VERDICTS_KEPT = 4096  # destinations whose verdict is kept (all forgotten when full)
# (decision, names, rule book version, name table version, valid until: wall time)
Verdict = tuple[Decision, tuple[str, ...], int, int, float]


class RetransmittedSyns:
    """A TCP flow's verdict, kept for its retransmitted SYNs."""

    def __init__(self) -> None:
        # by 5-tuple: (verdict, expiry, the SYN's sequence number); on the packet path,
        # test ``flows`` (a dict) for emptiness before calling ``repeat``
        self.flows: dict[FlowKey, tuple[Decision, float, int]] = {}
        self._expiry: deque[tuple[float, FlowKey]] = deque()  # in time order, for pruning

    def repeat(self, key: FlowKey, seq: int) -> Decision | None:
        """The verdict given to ``key`` with this SYN ``seq`` a moment ago, if any."""
        hit = self.flows.get(key)
        if hit is not None and hit[1] > time.monotonic() and hit[2] == seq:
            return hit[0]
        return None

    def remember(self, key: FlowKey, decision: Decision, seq: int) -> None:
        now = time.monotonic()
        expiry, recent = self._expiry, self.flows
        while expiry and expiry[0][0] <= now:
            _, old = expiry.popleft()
            hit = recent.get(old)
            if hit is not None and hit[1] <= now:
                del recent[old]
        until = now + RETRANSMIT_SECONDS
        recent[key] = (decision, until, seq)
        expiry.append((until, key))

    def clear(self) -> None:
        """Forget every flow (tests: the next SYN is a new connection)."""
        self.flows.clear()
        self._expiry.clear()


class KeptVerdicts:
    """A destination's verdict and names while the versions they came from hold."""

    def __init__(self) -> None:
        self._verdicts: dict[tuple[Proto, str, int], Verdict] = {}

    def get(self, key: FlowKey, rules_version: int, names_version: int) -> Verdict | None:
        kept = self._verdicts.get((key.proto, key.dst, key.dport))
        if (
            kept is not None
            and kept[2] == rules_version
            and kept[3] == names_version
            and time.time() < kept[4]
        ):
            return kept
        return None

    def keep(
        self, key: FlowKey, decision: Decision, names: tuple[str, ...], rules_version: int,
        names_version: int, until: float,
    ) -> None:  # fmt: skip
        if len(self._verdicts) >= VERDICTS_KEPT:
            self._verdicts.clear()
        self._verdicts[(key.proto, key.dst, key.dport)] = (
            decision, names, rules_version, names_version, until,
        )  # fmt: skip
