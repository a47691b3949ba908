"""The dashboard: pending decisions, live connections, the log and the rules of sessions.

It reaches gateways only through :class:`tui.client.GatewayLike` objects, one per session,
each followed by a worker (see :mod:`tui.sessions`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.css.query import NoMatches
from textual.timer import Timer
from textual.widgets import Footer, Header, TabbedContent, TabPane
from textual.worker import Worker

from snitch.core.logentry import EntryKind, LogEntry
from snitch.core.model import Event, PromptCounts
from snitch.core.safetext import safe
from tui.batch import FLUSH_EVERY, Changes, EventBatch
from tui.client import ApiError, GatewayLike
from tui.ruleactions import RuleActions
from tui.sessions import (
    DEFAULT_DELAYS,
    DEFAULT_GONE_AFTER,
    LINK_ERRORS,
    LinkState,
    SessionLink,
    follow,
    status_line,
)
from tui.widgets.output import OutputPane
from tui.widgets.pending import SESSION_WIDTH, PendingView
from tui.widgets.ports import PortsView
from tui.widgets.rules import RulesView
from tui.widgets.traffic import ConnectionsView, LogView

TABS = {tab: f"{tab}-table" for tab in ("pending", "connections", "log", "rules", "ports")}
"""Each tab and the table that gets the focus when it is shown."""
RULES_EVERY = 0.3
"""Seconds between two reloads of a session's rules however often they change."""
DISCOVER_EVERY = 2.0
"""Seconds between two askings of a fleet for its sessions (``discover``, ``--server``)."""
FLEET_SESSION_WIDTH = 30
"""A fleet dashboard's Session column: the id and the labels (``ID [k=v,...]``)."""


CONNECTION_KINDS = (EntryKind.FLOW, EntryKind.FILE)
"""What the Connections tab shows: flows, and the opens of shared files."""


def log_key(entry: LogEntry) -> tuple[object, ...]:
    """What tells a log entry from another one (to skip one seen in a snapshot and live)."""
    return (entry.time, entry.kind, entry.src, entry.sport, entry.dst, entry.dport, entry.qname,
            entry.method, tuple(entry.names))  # fmt: skip


class DashboardApp(RuleActions):
    """``output`` yields ``(stream, text)`` chunks of the sandboxed command, then
    ``("exit", code)``; the dashboard stays open until the user quits.

    ``clock`` is the time source of the countdowns (tests inject a fixed one).
    ``keymap`` gives bindings other keys, by binding id (``tui/keymap.py``).
    ``discover`` (a fleet dashboard) lists the sessions again every DISCOVER_EVERY
    seconds: one that joined since is followed too.
    """

    CSS_PATH = "dashboard.tcss"
    BINDINGS = [
        Binding("q", "quit", "Quit", id="app.quit"),
        Binding("1", "show_tab('pending')", "Pending", show=False, id="app.tab.pending"),
        Binding("2", "show_tab('connections')", "Connections", show=False,
                id="app.tab.connections"),
        Binding("3", "show_tab('log')", "Log", show=False, id="app.tab.log"),
        Binding("4", "show_tab('rules')", "Rules", show=False, id="app.tab.rules"),
        Binding("5", "show_tab('ports')", "Ports", show=False, id="app.tab.ports"),
        Binding("o", "toggle_output", "Output", id="app.output"),
        Binding("ctrl+r", "reload", "Reload", show=False, id="app.reload"),
    ]

    def __init__(
        self,
        clients: Sequence[GatewayLike],
        output: AsyncIterator[tuple[str, str]] | None = None,
        title: str = "coderun",
        *,
        clock: Callable[[], float] = time.time,
        retry_delays: Sequence[float] = DEFAULT_DELAYS,
        gone_after: int = DEFAULT_GONE_AFTER,
        log_limit: int = 500,
        keymap: Mapping[str, str] | None = None,
        discover: Callable[[], Awaitable[Sequence[GatewayLike]]] | None = None,
    ) -> None:
        super().__init__()
        if keymap:
            self.set_keymap(dict(keymap))
        self.title = safe(title)
        self.links = [SessionLink(i, client) for i, client in enumerate(clients)]
        self.discover = discover  # a fleet's sessions, asked again every DISCOVER_EVERY s
        self.output = output
        self.clock = clock
        self.retry_delays = tuple(retry_delays)
        self.gone_after = gone_after
        self.log_limit = log_limit
        self._jobs: list[Worker[Any]] = []
        self._ticker: Timer | None = None
        self._last_log: dict[int, float] = {}  # per link: the newest log entry's time
        self._loaded: dict[int, set[tuple[object, ...]]] = {}  # per link: the last snapshot
        self._batch = EventBatch()  # events since the last flush
        self._flush_timer: Timer | None = None
        self._flush_due = False
        self._last_flush = 0.0
        self.flushes = 0  # how often gathered events were applied (a flood: ~1/FLUSH_EVERY a s)
        self._rules_dirty: set[int] = set()  # links whose rules changed since the last load
        self._rules_job: Worker[None] | None = None
        # kept here, not queried: app.query_one looks at the active screen (maybe a dialog)
        multi = len(self.links) > 1 or discover is not None
        self.tabs = TabbedContent(initial="pending", id="tabs")
        width = FLEET_SESSION_WIDTH if discover is not None else SESSION_WIDTH
        self.pending_view = PendingView(clock, multi, id="pending-view", session_width=width)
        self.connections_view = ConnectionsView(multi, id="connections-view")
        self.log_view = LogView(multi, id="log-view")
        self.rules_view = RulesView(clock, id="rules-view")
        self.ports_view = PortsView(multi, id="ports-view")
        self.output_pane = OutputPane(id="output") if output is not None else None

    # -- layout -----------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield Header()
        with self.tabs:
            with TabPane("1 Pending", id="pending"):
                yield self.pending_view
            with TabPane("2 Connections", id="connections"):
                yield self.connections_view
            with TabPane("3 Log", id="log"):
                yield self.log_view
            with TabPane("4 Rules", id="rules"):
                yield self.rules_view
            with TabPane("5 Ports", id="ports"):
                yield self.ports_view
        if self.output_pane is not None:
            yield self.output_pane
        yield Footer(compact=True, show_command_palette=False)

    def on_mount(self) -> None:
        self._update_status()
        for link in self.links:
            self._follow(link)
        if self.discover is not None:
            self._track(self.run_worker(self._discover(self.discover), name="discover"))
        if self.output is not None and self.output_pane is not None:
            job = self._pump_output(self.output, self.output_pane)
            self._track(self.run_worker(job, name="output"))
        self._ticker = self.set_interval(1.0, self._tick)
        self._show_views(self.tabs.active or "pending")
        self.pending_view.table.focus()

    def _follow(self, link: SessionLink) -> None:
        job = follow(
            link, self._connected, self._on_event, self._state_changed,
            delays=self.retry_delays, gone_after=self.gone_after,
        )  # fmt: skip
        self._track(self.run_worker(job, name=f"events {link.name}", group="events"))

    async def _discover(self, discover: Callable[[], Awaitable[Sequence[GatewayLike]]]) -> None:
        """Sessions that joined the fleet since: followed like the first ones."""
        while True:
            await asyncio.sleep(DISCOVER_EVERY)
            try:
                found = await discover()
            except LINK_ERRORS:
                continue  # the service is away: its links say so
            known = {link.name for link in self.links}
            for client in found:
                if client.session not in known:
                    link = SessionLink(len(self.links), client)
                    self.links.append(link)
                    self._follow(link)
                    self._update_status()

    def _tick(self) -> None:
        with contextlib.suppress(NoMatches):  # quitting: the views' parts are going
            self.pending_view.tick()
            self.rules_view.tick()

    def _update_status(self) -> None:
        self.sub_title = safe(status_line(self.links)) if self.links else "no running session"
        count = len(self.pending_view.rows)
        label = f"1 Pending ({count})" if count else "1 Pending"
        tab = self.tabs.get_tab("pending")
        if str(tab.label) != label:  # a new label is a new layout: only when it changes
            tab.label = label
        counts = [link.counts for link in self.links]
        self.pending_view.set_counts(
            PromptCounts(collapsed=sum(c.collapsed for c in counts),
                          refused_full=sum(c.refused for c in counts))
        )

    # -- navigation -------------------------------------------------------------------------
    def action_show_tab(self, tab: str) -> None:
        self.tabs.active = tab
        self._show_views(tab)
        self.tabs.query_one(f"#{TABS[tab]}").focus()

    def on_tabbed_content_tab_activated(self, event: TabbedContent.TabActivated) -> None:
        if event.pane.id in TABS:
            self._show_views(event.pane.id)
            self.tabs.query_one(f"#{TABS[event.pane.id]}").focus()

    def _show_views(self, tab: str) -> None:
        """Only the shown tab's table follows changes; the others catch up when shown."""
        self.connections_view.set_shown(tab == "connections")
        self.log_view.set_shown(tab == "log")
        self.rules_view.set_shown(tab == "rules")

    def action_toggle_output(self) -> None:
        if self.output_pane is not None:
            self.output_pane.display = not self.output_pane.display

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("show_tab", "toggle_output") and len(self.screen_stack) > 1:
            return False  # a dialog is open: its keys only
        if action == "toggle_output":
            return self.output is not None
        return True

    def action_reload(self) -> None:
        for link in self.links:
            self._track(self.run_worker(self._refresh(link), group="refresh"))

    # -- gateway links ----------------------------------------------------------------------
    async def _connected(self, link: SessionLink) -> None:
        """Load the session's queue, rules and recent log (after every (re)connect)."""
        self._flush_events()  # what the old stream said first: the snapshot is newer
        client = link.client
        pending = await client.pending()
        rules = await client.rules()
        log = await client.log(self.log_limit)
        with contextlib.suppress(ApiError):  # a gateway without ports
            self._ports_changed(link, await client.ports(), announce=False)
        self.pending_view.replace(link.index, link.name, pending)
        self.rules_view.set_rules(link.index, rules)
        seen = self._last_log.get(link.index, 0.0)
        fresh = [entry for entry in log if entry.time > seen]  # not shown before a reconnect
        self._loaded[link.index] = {log_key(entry) for entry in log}  # skipped if live too
        self._add_logs(link, fresh)
        self._update_status()

    async def _on_event(self, link: SessionLink, event: Event) -> None:
        """Gather the event; the views change at the next flush (at most every
        FLUSH_EVERY seconds, so a flood of events does not stall the keys)."""
        if event.topic == "ports":  # rare (what listens changed): shown at once
            self._ports_changed(link, event.data)
            return
        try:
            self._batch.add(link.index, event)
        except (KeyError, TypeError, ValueError) as exc:  # one odd event: skip it, not the link
            self.log.warning(f"{link.name}: skipped event {safe(event.topic)}: {exc!r}")
            return
        if not self._flush_due:
            self._flush_due = True
            wait = self._last_flush + FLUSH_EVERY - time.monotonic()
            if wait > 0:
                self._flush_timer = self.set_timer(wait, self._flush_events, name="flush events")
            else:
                self.call_next(self._flush_events)

    def _flush_events(self) -> None:
        """Apply the gathered events: one change of each view per session."""
        if self._flush_timer is not None:
            self._flush_timer.stop()
            self._flush_timer = None
        self._flush_due = False
        self._last_flush = time.monotonic()
        if not self._batch or not self.pending_view.is_attached:  # nothing, or quitting
            return
        with contextlib.suppress(NoMatches):  # quitting: the views' parts are going
            self._apply_batch()

    def _apply_batch(self) -> None:
        self.flushes += 1
        for index, changes in self._batch.take().items():
            link = self.links[index]
            try:
                self._apply(link, changes)
            except (KeyError, TypeError, ValueError) as exc:  # odd data: skip it, not the run
                self.log.warning(f"{link.name}: skipped {changes.events} events: {exc!r}")
        self._update_status()

    def _apply(self, link: SessionLink, changes: Changes) -> None:
        if changes.info is not None:
            link.info = changes.info
        if changes.counts is not None:
            link.counts = changes.counts
        if changes.pending:
            self.pending_view.apply(link.index, link.name, changes.pending)
        loaded = self._loaded.get(link.index, set())
        self._add_logs(link, [e for e in changes.log if log_key(e) not in loaded])
        if changes.rules:
            self._reload_rules(link.index)

    def _reload_rules(self, index: int) -> None:
        """Load the session's rules again soon: at once if idle, else at most every
        RULES_EVERY seconds however many changes are announced."""
        self._rules_dirty.add(index)
        if self._rules_job is None or self._rules_job.is_finished:
            self._rules_job = self.run_worker(self._load_rules(), group="rules-load")
            self._track(self._rules_job)

    async def _load_rules(self) -> None:
        while self._rules_dirty:
            indexes = sorted(self._rules_dirty)
            self._rules_dirty.clear()
            for index in indexes:
                link = self.links[index]
                with contextlib.suppress(NoMatches, *LINK_ERRORS):  # NoMatches: quitting
                    self.rules_view.set_rules(index, await link.client.rules())
            await asyncio.sleep(RULES_EVERY)

    def _add_logs(self, link: SessionLink, entries: list[LogEntry]) -> None:
        if not entries:
            return
        for entry in entries:
            entry.session = entry.session or link.name
        newest = max(entry.time for entry in entries)
        self._last_log[link.index] = max(newest, self._last_log.get(link.index, 0.0))
        self.log_view.add_many(entries)
        self.connections_view.add_many([e for e in entries if e.kind in CONNECTION_KINDS])

    def _state_changed(self, link: SessionLink) -> None:
        if link.state is LinkState.GONE:
            self.pending_view.replace(link.index, link.name, [])
            self.rules_view.drop(link.index)
            self.ports_view.drop(link.index)
            self.notify(safe(f"session {link.short} is gone ({link.error})"), severity="warning",
                        markup=False)  # fmt: skip
        self._update_status()

    # -- listening ports ----------------------------------------------------------------------
    def _ports_changed(self, link: SessionLink, state: dict[str, Any],
                       announce: bool = True) -> None:  # fmt: skip
        new = self.ports_view.set_state(link.index, link.name, state)
        for row in new if announce else []:
            by = f", {row.process}" if row.process else ""
            self.notify(safe(f"{link.short}: the sandbox listens on {row.port}/{row.proto} "
                             f"({row.addr}{by}); 5 Ports, f forwards it"), title="Port",
                        markup=False)  # fmt: skip
        if new and announce:
            self.bell()

    def on_ports_view_forward(self, message: PortsView.Forward) -> None:
        row = self.ports_view.get(message.key)
        if row is None or row.proto != "tcp" or row.forward:
            return
        if row.loopback:
            self.notify(safe(f"{row.port}/tcp listens on the sandbox's loopback only: a forward "
                             "cannot reach it"), title="Forward", severity="warning",
                        markup=False)  # fmt: skip
            return
        link = self.links[row.link]
        self._track(self.run_worker(self._forward(link, row.port), group="ports"))

    async def _forward(self, link: SessionLink, port: int) -> None:
        try:
            fwd = await link.client.forward(port, port)
            self.notify(safe(f"{link.short}: 127.0.0.1:{fwd['host_port']} → sandbox :{port}"),
                        title="Forward", markup=False)  # fmt: skip
        except (ApiError, OSError, KeyError) as exc:
            self.notify(safe(f"{link.short}: {exc}"), title="Forward", severity="error",
                        markup=False)  # fmt: skip

    # -- the sandboxed command's output -----------------------------------------------------
    async def _pump_output(self, output: AsyncIterator[tuple[str, str]], pane: OutputPane) -> None:
        try:
            async for stream, text in output:
                pane.add_chunk(stream, text)
        except Exception as exc:  # the runner's stream broke; the dashboard stays up
            pane.add_chunk("stderr", f"\n(output stream failed: {exc})\n")
