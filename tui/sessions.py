"""One link per gateway: follow its event stream, reconnecting with back-off.

A link that fails ``gone_after`` times in a row is shown as gone (its items can no longer
be decided); it keeps being retried at the longest delay, and comes back when it answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from snitch.core.apitypes import SessionInfo
from snitch.core.model import Event, PromptCounts
from tui.client import ApiError, GatewayLike
from tui.format import short_session

DEFAULT_DELAYS: tuple[float, ...] = (0.5, 1.0, 2.0, 5.0, 10.0)
DEFAULT_GONE_AFTER = 4
LINK_ERRORS = (ApiError, OSError, EOFError, ValueError, KeyError)
"""What a broken or restarting gateway can raise; anything else is a bug and surfaces."""


class LinkState(enum.StrEnum):
    CONNECTING = "connecting"
    LIVE = "live"
    RETRYING = "retrying"
    GONE = "gone"


@dataclass(eq=False)
class SessionLink:
    """A gateway client and what the dashboard knows about its connection."""

    index: int
    client: GatewayLike
    state: LinkState = LinkState.CONNECTING
    failures: int = 0
    error: str = ""
    info: SessionInfo | None = None  # from the gateway's ``session`` event
    counts: PromptCounts = field(default_factory=PromptCounts)  # what the gateway held back

    @property
    def name(self) -> str:
        return self.client.session

    @property
    def short(self) -> str:
        return short_session(self.client.session)


Connected = Callable[[SessionLink], Awaitable[None]]
Handler = Callable[[SessionLink, Event], Awaitable[None]]
StateChanged = Callable[[SessionLink], None]


async def follow(
    link: SessionLink,
    on_connected: Connected,
    on_event: Handler,
    on_state: StateChanged,
    *,
    delays: Sequence[float] = DEFAULT_DELAYS,
    gone_after: int = DEFAULT_GONE_AFTER,
) -> None:
    """Run until cancelled: subscribe, load a snapshot on the first event, dispatch events.

    The snapshot is loaded after the stream is open, so nothing is missed in between;
    handlers must treat a ``pending`` event for a known item as an update.
    """
    while True:
        stream = link.client.events()
        try:
            first = True
            async for event in stream:
                if first:
                    first = False
                    await on_connected(link)
                    link.failures, link.error = 0, ""
                    _set_state(link, LinkState.LIVE, on_state)
                await on_event(link, event)
            link.error = "the event stream ended"
        except LINK_ERRORS as exc:
            link.error = str(exc) or type(exc).__name__
        finally:
            close = getattr(stream, "aclose", None)
            if close is not None:
                with contextlib.suppress(*LINK_ERRORS):
                    await close()
        link.failures += 1
        gone = link.failures >= gone_after
        _set_state(link, LinkState.GONE if gone else LinkState.RETRYING, on_state)
        await asyncio.sleep(delays[min(link.failures, len(delays)) - 1])


def _set_state(link: SessionLink, state: LinkState, on_state: StateChanged) -> None:
    if link.state is not state:
        link.state = state
        on_state(link)


def status_line(links: Sequence[SessionLink]) -> str:
    """The header's sub-title: every session's state, or counts when there are many."""
    if len(links) == 1:
        link = links[0]
        return f"session {link.short} · {link.state}"
    if len(links) <= 3:
        return " · ".join(f"{link.short} {link.state}" for link in links)
    counts: dict[str, int] = {}
    for link in links:
        counts[link.state] = counts.get(link.state, 0) + 1
    parts = ", ".join(f"{n} {state}" for state, n in counts.items())
    return f"{len(links)} sessions: {parts}"
