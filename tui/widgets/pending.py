"""The pending queue: one row per held connection or lookup, with a live countdown."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import DataTable, Static

from snitch.model import Action, Pending
from tui.format import countdown, port_proto, short_session

Cell = str | Text
LABEL_WIDTH = 34


@dataclass(slots=True)
class PendingRow:
    """A pending item and which session (link index) it belongs to."""

    link: int
    session: str
    item: Pending
    busy: str = ""  # e.g. "allow…" while a decision is on its way

    @property
    def key(self) -> str:
        return row_key(self.link, self.item.id)


def row_key(link: int, pending_id: str) -> str:
    return f"{link}:{pending_id}"


def describe(row: PendingRow) -> str:
    """The detail line under the table for the selected item."""
    p = row.item
    if p.kind == "dns":
        what = f"DNS lookup of {p.label} from {p.src}"
    else:
        target = f"{p.dst}:{p.dport}/{p.proto}" if p.dport else f"{p.dst} {p.proto}"
        name = f"{p.label} → " if p.label != p.dst else ""
        what = f"{name}{target} from {p.src}:{p.sport}"
    tries = f" · {p.attempts} attempts" if p.attempts > 1 else ""
    return f"{what}{tries} · session {row.session}"


class PendingTable(DataTable[Cell]):
    """The queue's table; its keys post :class:`PendingView` messages."""

    BINDINGS = [
        Binding("a", "quick('allow', False)", "Allow"),
        Binding("A", "quick('allow', True)", "Always"),
        Binding("d", "quick('deny', False)", "Deny"),
        Binding("D", "quick('deny', True)", "Deny always"),
        Binding("enter", "select_cursor", "Decide…"),
        Binding("b", "batch", "Batch…"),
    ]

    def action_quick(self, action: str, always: bool) -> None:
        key = self.current_key()
        if key is not None:
            self.post_message(PendingView.Quick(key, Action(action), always))

    def action_batch(self) -> None:
        self.post_message(PendingView.Batch(self.current_key()))

    def current_key(self) -> str | None:
        if not self.row_count:
            return None
        return self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value


class PendingView(Vertical):
    """The table, and a line describing the selected item in full."""

    class Quick(Message):
        """``a``/``A``/``d``/``D`` on a row: once, or always for this host and port."""

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

    def __init__(self, clock: Callable[[], float], multi: bool, id: str | None = None) -> None:
        super().__init__(id=id)
        self.clock = clock
        self.multi = multi
        self.rows: dict[str, PendingRow] = {}

    def compose(self) -> ComposeResult:
        table = PendingTable(cursor_type="row", zebra_stripes=True, id="pending-table")
        table.add_column(Text("Left", justify="right"), key="left", width=6)
        table.add_column("Destination", key="label", width=LABEL_WIDTH)
        table.add_column("Port", key="port", width=9)
        table.add_column(Text("Tries", justify="right"), key="tries", width=5)
        if self.multi:
            table.add_column("Session", key="session", width=12)
        yield table
        yield Static("", id="pending-detail", classes="detail")

    @property
    def table(self) -> PendingTable:
        return self.query_one(PendingTable)

    def on_mount(self) -> None:
        self._show_detail()

    # -- updates from the app -------------------------------------------------------------
    def upsert(self, link: int, session: str, item: Pending) -> None:
        """Add an item, or update it (a retransmission bumps ``attempts``)."""
        key = row_key(link, item.id)
        old = self.rows.get(key)
        row = PendingRow(link, session, item, old.busy if old else "")
        self.rows[key] = row
        table = self.table
        if old is None:
            table.add_row(*self._cells(row), key=key)
        else:
            for column, value in zip(self._columns(), self._cells(row), strict=True):
                table.update_cell(key, column, value)
        self._show_detail()

    def drop(self, link: int, pending_id: str) -> None:
        key = row_key(link, pending_id)
        if self.rows.pop(key, None) is not None:
            self.table.remove_row(key)
            self._show_detail()

    def replace(self, link: int, session: str, items: Iterable[Pending]) -> None:
        """The session's current queue (after a (re)connect or a refresh)."""
        fresh = {item.id: item for item in items}
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

    def tick(self) -> None:
        """Refresh every countdown (called once a second)."""
        for key, row in self.rows.items():
            self.table.update_cell(key, "left", self._left(row))

    def selected(self) -> PendingRow | None:
        key = self.table.current_key()
        return None if key is None else self.rows.get(key)

    def session_rows(self, link: int) -> list[PendingRow]:
        return [r for r in self.rows.values() if r.link == link]

    # -- rendering ------------------------------------------------------------------------
    def _columns(self) -> list[str]:
        return ["left", "label", "port", "tries"] + (["session"] if self.multi else [])

    def _left(self, row: PendingRow) -> Text:
        if row.busy:
            return Text(row.busy, style="dim italic", justify="right")
        if not row.item.deadline:
            return Text("—", justify="right")
        return countdown(row.item.deadline - self.clock())

    def _cells(self, row: PendingRow) -> list[Cell]:
        p = row.item
        label = p.label if len(p.label) <= LABEL_WIDTH else p.label[: LABEL_WIDTH - 1] + "…"
        style = "bold" if p.label != p.dst else ""
        port = "lookup" if p.kind == "dns" else port_proto(p.dport, p.proto)
        cells: list[Cell] = [
            self._left(row),
            Text(label, style=style),
            port,
            Text(str(p.attempts), justify="right"),
        ]
        if self.multi:
            cells.append(short_session(row.session))
        return cells

    def _show_detail(self) -> None:
        row = self.selected()
        detail = self.query_one(".detail", Static)
        if row is not None:
            detail.update(describe(row))
        elif not self.rows:
            detail.update("Nothing is waiting for a decision.")
        else:
            detail.update("")

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        event.stop()
        self._show_detail()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        if event.row_key.value is not None:
            self.post_message(PendingView.Open(event.row_key.value))
