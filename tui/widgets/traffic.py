"""Live connections (flow log entries as they come) and the filterable log."""

from __future__ import annotations

from collections import deque

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import DataTable, Input, Static

from snitch.core.logentry import LogEntry
from snitch.core.safetext import safe
from tui.format import (
    clock_time,
    describe_entry,
    entry_port,
    entry_target,
    filter_matches,
    short_session,
    verdict_text,
)
from tui.inert import plain

Cell = str | Text
MAX_ROWS = 2000
TRIM_SLACK = 250
"""Rows over MAX_ROWS kept until they are trimmed at once (removing one row costs as much
as the table is long)."""
TARGET_WIDTH = 40


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
        self.extend([entry])

    def extend(self, entries: list[LogEntry]) -> None:
        """Add entries at the bottom; the oldest go beyond MAX_ROWS (+ slack)."""
        follow = self.row_count == 0 or self.cursor_row >= self.row_count - 1
        for entry in entries[-MAX_ROWS:]:
            self._serial += 1
            self.entries[str(self._serial)] = entry
            self.add_row(*self._cells(entry), key=str(self._serial))
        if self.row_count > MAX_ROWS + TRIM_SLACK:
            self._trim()
        if follow:
            self.move_cursor(row=self.row_count - 1, animate=False)

    def _trim(self) -> None:
        """Keep the newest MAX_ROWS rows (rebuilt at once), and the selected one's place."""
        selected = None
        if self.row_count:
            selected = self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value
        kept = list(self.entries.items())[-MAX_ROWS:]
        self.clear()
        self.entries = dict(kept)
        for key, entry in kept:
            self.add_row(*self._cells(entry), key=key)
        if selected in self.entries:
            self.move_cursor(row=self.get_row_index(selected), animate=False)

    def clear_entries(self) -> None:
        self.clear()
        self.entries.clear()

    def selected(self) -> LogEntry | None:
        if not self.row_count:
            return None
        key = self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value
        return self.entries.get(key or "")

    def _cells(self, entry: LogEntry) -> list[Cell]:
        cells: list[Cell] = [Text(clock_time(entry.time))]
        if self.kinds:
            cells.append(Text(str(entry.kind)))
        cells += [
            Text(entry_target(entry, TARGET_WIDTH)),
            Text(entry_port(entry)),
            verdict_text(safe(entry.verdict)),
            plain(entry.rule or entry.reason, style="dim"),
        ]
        if self.multi:
            cells.append(plain(short_session(entry.session)))
        return cells


class TrafficView(Vertical):
    """A traffic table and a line describing the selected entry in full.

    While its tab is hidden, new entries wait in a backlog (the newest MAX_ROWS) and are
    added when it is shown: a flood of log lines costs no redraw of a table nobody sees.
    """

    def __init__(self, id: str | None = None) -> None:
        super().__init__(id=id)
        self.shown = True
        self._backlog: deque[LogEntry] = deque(maxlen=MAX_ROWS)

    def set_shown(self, shown: bool) -> None:
        self.shown = shown
        if shown and self._backlog:
            entries = list(self._backlog)
            self._backlog.clear()
            self._show(entries)

    def _show(self, entries: list[LogEntry]) -> None:
        if not entries:
            return
        if not self.shown:
            self._backlog.extend(entries)
            return
        self.query_one(TrafficTable).extend(entries)
        self.show_detail()

    def show_detail(self) -> None:
        entry = self.query_one(TrafficTable).selected()
        text = describe_entry(entry) if entry else "Nothing logged yet."
        self.query_one(".detail", Static).update(Text(text))

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
        self.add_many([entry])

    def add_many(self, entries: list[LogEntry]) -> None:
        self._show(entries)


class LogView(TrafficView):
    """Every log line, filtered by the words in the filter input."""

    BINDINGS = [
        Binding("slash", "focus_filter", "Filter", id="log.filter"),
        Binding("escape", "leave_filter", "Done", show=False, id="log.filter-done"),
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
        self.add_many([entry])

    def add_many(self, entries: list[LogEntry]) -> None:
        self.entries.extend(entries)
        query = self.query_text
        self._show([entry for entry in entries if filter_matches(query, entry)])

    def on_input_changed(self, event: Input.Changed) -> None:
        event.stop()
        table = self.query_one(TrafficTable)
        table.clear_entries()
        self._backlog.clear()
        table.extend([entry for entry in self.entries if filter_matches(event.value, entry)])
        self.show_detail()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.query_one(TrafficTable).focus()

    def action_focus_filter(self) -> None:
        self.query_one("#log-filter", Input).focus()

    def action_leave_filter(self) -> None:
        self.query_one(TrafficTable).focus()
