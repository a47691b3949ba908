"""Live connections (flow log entries as they come) and the filterable log."""

from __future__ import annotations

from collections import deque

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.coordinate import Coordinate
from textual.widgets import DataTable, Input, Static

from snitch.model import LogEntry
from tui.format import (
    clock_time,
    describe_entry,
    entry_port,
    entry_target,
    filter_matches,
    short_session,
    verdict_text,
)

Cell = str | Text
MAX_ROWS = 2000


class TrafficTable(DataTable[Cell]):
    """Log entries, newest at the bottom; follows new rows while the cursor is on the last."""

    def __init__(self, multi: bool, kinds: bool, id: str | None = None) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, id=id)
        self.multi = multi
        self.kinds = kinds  # show the entry kind (the log view mixes flows, dns, http)
        self.entries: dict[str, LogEntry] = {}
        self._serial = 0

    def on_mount(self) -> None:
        self.add_column("Time", key="time", width=8)
        if self.kinds:
            self.add_column("Kind", key="kind", width=5)
        self.add_column("Destination", key="target")
        self.add_column("Port", key="port", width=9)
        self.add_column("Verdict", key="verdict", width=7)
        self.add_column("Rule", key="rule")
        if self.multi:
            self.add_column("Session", key="session", width=12)

    def append(self, entry: LogEntry) -> None:
        follow = self.row_count == 0 or self.cursor_row >= self.row_count - 1
        self._serial += 1
        self.entries[str(self._serial)] = entry
        self.add_row(*self._cells(entry), key=str(self._serial))
        while self.row_count > MAX_ROWS:
            first = self.coordinate_to_cell_key(Coordinate(0, 0)).row_key
            self.remove_row(first)
            self.entries.pop(first.value or "", None)
        if follow:
            self.move_cursor(row=self.row_count - 1, animate=False)

    def clear_entries(self) -> None:
        self.clear()
        self.entries.clear()

    def selected(self) -> LogEntry | None:
        if not self.row_count:
            return None
        key = self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value
        return self.entries.get(key or "")

    def _cells(self, entry: LogEntry) -> list[Cell]:
        target = entry_target(entry)
        cells: list[Cell] = [clock_time(entry.time)]
        if self.kinds:
            cells.append(str(entry.kind))
        cells += [
            Text(target if len(target) <= 40 else target[:39] + "…"),
            entry_port(entry),
            verdict_text(entry.verdict),
            Text(entry.rule or entry.reason, style="dim"),
        ]
        if self.multi:
            cells.append(short_session(entry.session))
        return cells


class TrafficView(Vertical):
    """A traffic table and a line describing the selected entry in full."""

    def show_detail(self) -> None:
        entry = self.query_one(TrafficTable).selected()
        text = describe_entry(entry) if entry else "Nothing logged yet."
        self.query_one(".detail", Static).update(text)

    def on_mount(self) -> None:
        self.show_detail()

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        event.stop()
        self.show_detail()


class ConnectionsView(TrafficView):
    """Flows as the gateways log them: names, verdict and the deciding rule."""

    def __init__(self, multi: bool, id: str | None = None) -> None:
        super().__init__(id=id)
        self.multi = multi

    def compose(self) -> ComposeResult:
        yield TrafficTable(self.multi, kinds=False, id="connections-table")
        yield Static("", classes="detail")

    def add(self, entry: LogEntry) -> None:
        self.query_one(TrafficTable).append(entry)
        self.show_detail()


class LogView(TrafficView):
    """Every log line, filtered by the words in the filter input."""

    BINDINGS = [
        Binding("slash", "focus_filter", "Filter"),
        Binding("escape", "leave_filter", "Done", show=False),
    ]

    def __init__(self, multi: bool, id: str | None = None) -> None:
        super().__init__(id=id)
        self.multi = multi
        self.entries: deque[LogEntry] = deque(maxlen=MAX_ROWS * 2)

    def compose(self) -> ComposeResult:
        hint = "filter: host, name, verdict, rule…  (/)"
        yield Input(placeholder=hint, compact=True, id="log-filter")
        yield TrafficTable(self.multi, kinds=True, id="log-table")
        yield Static("", classes="detail")

    @property
    def query_text(self) -> str:
        return self.query_one("#log-filter", Input).value

    def add(self, entry: LogEntry) -> None:
        self.entries.append(entry)
        if filter_matches(self.query_text, entry):
            self.query_one(TrafficTable).append(entry)
            self.show_detail()

    def add_many(self, entries: list[LogEntry]) -> None:
        for entry in entries:
            self.add(entry)

    def on_input_changed(self, event: Input.Changed) -> None:
        event.stop()
        table = self.query_one(TrafficTable)
        table.clear_entries()
        for entry in self.entries:
            if filter_matches(event.value, entry):
                table.append(entry)
        self.show_detail()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.query_one(TrafficTable).focus()

    def action_focus_filter(self) -> None:
        self.query_one("#log-filter", Input).focus()

    def action_leave_filter(self) -> None:
        self.query_one(TrafficTable).focus()
