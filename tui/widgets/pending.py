"""The pending queue: one row per held connection or lookup, with a live countdown.

The sandbox knows every deadline, so it can make a row above the selected one vanish just
before a key arrives. Keys therefore act on the item the person saw highlighted (its id),
the cursor follows that item when rows come and go, and for ``SETTLE_SECONDS`` after the
highlighted row changed under the cursor (another item, the same item on another line, or
the same line showing something else) the decision keys are ignored.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable, Iterator, Mapping

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import DataTable, Static

from snitch.core.model import Action, Pending, PendingKind, PromptCounts
from tui.format import countdown, port_proto, short_session
from tui.inert import name_text, plain, shown_name
from tui.widgets.pendingrow import PendingRow, describe, row_key, safe_cell

Cell = str | Text
MIN_LABEL_WIDTH = 30
FILE_MARK = "▤ file "  # before a held open's path (the sandbox cannot style a cell)
SETTLE_SECONDS = 0.6
"""Keys are ignored this long after the highlighted row changed under the cursor."""
_FIXED = {"left": 6, "port": 9, "tries": 5, "flows": 5}
SESSION_WIDTH = 12
_CHROME = 2  # the vertical scrollbar


class PendingTable(DataTable[Cell]):
    """The queue's table; its keys go to :class:`PendingView`, which decides what they
    act on (or that they are ignored, while the rows just changed under the cursor)."""

    BINDINGS = [
        Binding("a", "key('allow', False)", "Allow", id="pending.allow"),
        Binding("A", "key('allow', True)", "Always", id="pending.allow-always"),
        Binding("d", "key('deny', False)", "Deny", id="pending.deny"),
        Binding("D", "key('deny', True)", "Deny always", id="pending.deny-always"),
        Binding("enter", "key('open', False)", "Decide…", id="pending.decide"),
        Binding("b", "key('batch', False)", "Batch…", id="pending.batch"),
    ]

    class Pressed(Message):
        def __init__(self, what: str, always: bool) -> None:
            super().__init__()
            self.what, self.always = what, always

    def action_key(self, what: str, always: bool) -> None:
        self.post_message(PendingTable.Pressed(what, always))

    def current_key(self) -> str | None:
        if not self.row_count:
            return None
        return self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value


class PendingView(Vertical):
    """The table, a line about what the gateway held back, and a line describing the
    selected item in full."""

    class Quick(Message):
        """``a``/``A``/``d``/``D`` on an item: once, or always for this host and port."""

        def __init__(self, key: str, action: Action, always: bool) -> None:
            super().__init__()
            self.key, self.action, self.always = key, action, always

    class Open(Message):
        """Enter (or a click on the selected row): the decision dialog."""

        def __init__(self, key: str) -> None:
            super().__init__()
            self.key = key

    class Batch(Message):
        """``b``: decide every item matching a pattern; ``key`` prefills it."""

        def __init__(self, key: str | None) -> None:
            super().__init__()
            self.key = key

    def __init__(
        self,
        clock: Callable[[], float],
        multi: bool,
        id: str | None = None,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        session_width: int = SESSION_WIDTH,
    ) -> None:
        super().__init__(id=id)
        self.clock = clock
        self.monotonic = monotonic
        self.multi = multi
        self.session_width = session_width  # a fleet's: wide enough for the labels too
        self.rows: dict[str, PendingRow] = {}
        self.label_width = MIN_LABEL_WIDTH + 4
        self.unsettled_until = 0.0
        self._warned_until = 0.0
        self._depth = 0
        # kept, not queried: late timers and events may still call in while unmounting
        self._table = PendingTable(cursor_type="row", zebra_stripes=True, id="pending-table")
        self._counts = Static("", id="pending-counts")
        self._counts_shown: str | None = None
        self._detail = Static("", id="pending-detail", classes="detail")

    def compose(self) -> ComposeResult:
        self._add_columns(self._table)
        yield self._counts
        yield self._table
        yield self._detail

    def _add_columns(self, table: PendingTable) -> None:
        table.add_column(Text("Left", justify="right"), key="left", width=_FIXED["left"])
        table.add_column("Destination", key="label", width=self.label_width)
        table.add_column("Port", key="port", width=_FIXED["port"])
        table.add_column(Text("Tries", justify="right"), key="tries", width=_FIXED["tries"])
        table.add_column(Text("Conns", justify="right"), key="flows", width=_FIXED["flows"])
        if self.multi:
            table.add_column("Session", key="session", width=self.session_width)

    @property
    def table(self) -> PendingTable:
        return self._table

    def on_mount(self) -> None:
        self.set_counts(PromptCounts())
        self._show_detail()

    def on_resize(self) -> None:
        """Give the destination what is left of the width (names are elided to fit it)."""
        columns = len(_FIXED) + 1 + self.multi
        fixed = sum(_FIXED.values()) + (self.session_width if self.multi else 0)
        width = max(MIN_LABEL_WIDTH, self.size.width - fixed - 2 * columns - _CHROME)
        if width == self.label_width:
            return
        self.label_width = width
        table = self.table
        with self._steady():
            table.clear(columns=True)
            self._add_columns(table)
            for key, row in self.rows.items():
                table.add_row(*self._cells(row), key=key, height=_height(row.item))

    # -- updates from the app -------------------------------------------------------------
    def upsert(self, link: int, session: str, item: Pending) -> None:
        """Add an item, or update it (a retransmission bumps ``attempts``)."""
        with self._steady():
            key = row_key(link, item.id)
            old = self.rows.get(key)
            row = PendingRow(link, session, item, old.busy if old else "")
            self.rows[key] = row
            if old is None or _height(old.item) != _height(item):
                if old is not None:
                    self.table.remove_row(key)
                self.table.add_row(*self._cells(row), key=key, height=_height(item))
            else:
                self._update_row(key, row)

    def drop(self, link: int, pending_id: str) -> None:
        with self._steady():
            key = row_key(link, pending_id)
            if self.rows.pop(key, None) is not None:
                self.table.remove_row(key)

    def apply(self, link: int, session: str, changes: Mapping[str, Pending | None]) -> None:
        """Several changes of one session at once: an item (new or updated) or None
        (decided or expired) per id, in the order they happened."""
        with self._steady():
            for pending_id, item in changes.items():
                if item is None:
                    self.drop(link, pending_id)
                else:
                    self.upsert(link, session, item)

    def replace(self, link: int, session: str, items: Iterable[Pending]) -> None:
        """The session's current queue (after a (re)connect or a refresh)."""
        fresh = {item.id: item for item in items}
        with self._steady():
            for row in [r for r in self.rows.values() if r.link == link]:
                if row.item.id not in fresh:
                    self.drop(link, row.item.id)
            for item in fresh.values():
                self.upsert(link, session, item)

    def set_busy(self, keys: Iterable[str], text: str) -> None:
        for key in keys:
            row = self.rows.get(key)
            if row is not None:
                row.busy = text
                self.table.update_cell(key, "left", self._left(row))

    def set_counts(self, counts: PromptCounts) -> None:
        """What the gateways held back (every session together); hidden while nothing."""
        line = self._counts
        parts = []
        if counts.collapsed:
            parts.append(f"{counts.collapsed} connections merged into pending items")
        if counts.refused:
            parts.append(f"{counts.refused} refused without asking (too many pending or too fast)")
        shown = " · ".join(parts)
        if shown == self._counts_shown:  # unchanged: no new layout (a flood sends many)
            return
        self._counts_shown = shown
        line.display = bool(parts)
        line.update(Text("⚠ " + shown, style="bold yellow") if parts else "")

    def tick(self) -> None:
        """Refresh every countdown (called once a second)."""
        for key, row in self.rows.items():
            self.table.update_cell(key, "left", self._left(row))

    def selected(self) -> PendingRow | None:
        key = self.table.current_key()
        return None if key is None else self.rows.get(key)

    def session_rows(self, link: int) -> list[PendingRow]:
        return [r for r in self.rows.values() if r.link == link]

    # -- the item the person saw --------------------------------------------------------
    @property
    def settled(self) -> bool:
        return self.monotonic() >= self.unsettled_until

    def _highlight(self) -> tuple[str, int, tuple[object, ...]] | None:
        row = self.selected()
        if row is None:
            return None
        p = row.item
        shown = (tuple(p.names[:1]), p.claimed, p.dst, p.dport, p.proto, p.kind, p.exe)
        return (row.key, self.table.cursor_row, shown)

    @contextlib.contextmanager
    def _steady(self) -> Iterator[None]:
        """Around a change of the rows: keep the cursor on the item it was on, and start
        the settling time if the highlighted row changed anyway."""
        self._depth += 1
        before = self._highlight() if self._depth == 1 else None
        try:
            yield
        finally:
            self._depth -= 1
            if self._depth == 0:
                self._settle(before)

    def _settle(self, before: tuple[str, int, tuple[object, ...]] | None) -> None:
        table = self.table
        if before is not None and before[0] in self.rows:
            index = table.get_row_index(before[0])
            if index != table.cursor_row:
                table.move_cursor(row=index, animate=False)
        if self._highlight() != before:
            self.unsettled_until = self.monotonic() + SETTLE_SECONDS
        self._show_detail()

    def on_pending_table_pressed(self, event: PendingTable.Pressed) -> None:
        event.stop()
        key = self.table.current_key()
        if event.what == "batch":  # a dialog that shows what it covers: no need to wait
            self.post_message(PendingView.Batch(key))
            return
        if key is None:
            return
        if not self.settled:
            self._warn_unsettled()
            return
        if event.what == "open":
            self.post_message(PendingView.Open(key))
        else:
            self.post_message(PendingView.Quick(key, Action(event.what), event.always))

    def _warn_unsettled(self) -> None:
        self.app.bell()
        if self.monotonic() >= self._warned_until:
            self._warned_until = self.unsettled_until
            self.notify(
                "The queue changed under the cursor: check the highlighted row, then press "
                "the key again.",
                title="Key ignored",
                severity="warning",
                timeout=3,
                markup=False,
            )

    # -- rendering ------------------------------------------------------------------------
    def _columns(self) -> list[str]:
        return ["left", "label", "port", "tries", "flows"] + (["session"] if self.multi else [])

    def _update_row(self, key: str, row: PendingRow) -> None:
        for column, value in zip(self._columns(), self._cells(row), strict=True):
            self.table.update_cell(key, column, value)

    def _left(self, row: PendingRow) -> Text:
        if row.busy:
            return Text(row.busy, style="dim italic", justify="right")
        if not row.item.deadline:
            return Text("—", justify="right")
        return countdown(row.item.deadline - self.clock())

    def _label(self, p: Pending) -> Text:
        width = self.label_width
        if p.kind == PendingKind.FILE:
            path = safe_cell(p.path)
            room = max(8, width - len(FILE_MARK))
            if len(path) > room:  # the end of a path says the most
                path = "…" + path[-(room - 1) :]
            text = Text(FILE_MARK, style="bold magenta")
            text.append(path, style="bold")
            return text
        if p.names:
            return self._by(p, name_text(p.label, width, style="bold"))
        text = self._by(p, plain(p.dst))
        if p.claimed:  # the address is what it is; the name is only what the sandbox said
            name = shown_name(p.claimed, max(8, width - len("claims  (unverified)")))
            text.append("\nclaims ", style="italic")
            text.append(name, style="italic")
            text.append(" (unverified)", style="bold red")
        return text

    @staticmethod
    def _by(p: Pending, label: Text) -> Text:
        """The label, then the program that asked (its file name; in full in the detail)."""
        if p.pid:
            label.append(f"  {safe_cell(p.exe.rsplit('/', 1)[-1] or '?')}", style="dim")
        return label

    def _cells(self, row: PendingRow) -> list[Cell]:
        p = row.item
        if p.kind == PendingKind.FILE:
            port = safe_cell(p.access)
        else:
            port = "lookup" if p.kind == "dns" else port_proto(p.dport, safe_cell(p.proto))
        if p.kind == PendingKind.REQUEST:
            port = f"{safe_cell(p.method)[:8]} {port}"  # a request, not a connection
        cells: list[Cell] = [
            self._left(row),
            self._label(p),
            Text(port),
            Text(str(p.attempts), justify="right"),
            Text(str(p.flows), justify="right", style="bold" if p.flows > 1 else "dim"),
        ]
        if self.multi:
            cells.append(Text(short_session(safe_cell(row.session), self.session_width)))
        return cells

    def _show_detail(self) -> None:
        row = self.selected()
        detail = self._detail
        if row is not None:
            detail.update(describe(row))
        elif not self.rows:
            detail.update(Text("Nothing is waiting for a decision."))
        else:
            detail.update(Text(""))

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        event.stop()
        self._show_detail()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        """A click on the selected row."""
        event.stop()
        if event.row_key.value is None:
            return
        if not self.settled:
            self._warn_unsettled()
            return
        self.post_message(PendingView.Open(event.row_key.value))


def _height(item: Pending) -> int:
    return 2 if item.claimed and not item.names else 1
