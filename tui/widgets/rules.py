"""The rules list. Keys post :class:`RulesView` messages; the app talks to the gateway."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import DataTable, Static

from snitch.core.grammar import lifetime_text
from snitch.core.model import Rule
from snitch.core.safetext import safe
from tui.format import LIFETIME_PARTS, clock_time, rule_target
from tui.inert import NAME_WIDTH

Cell = str | Text
TARGET_WIDTH = 28
FIXED_WIDTH = 4 + 2 + 6 + TARGET_WIDTH + 9 + 5 + 7 * 2 + 2  # the other columns, padding, scrollbar


@dataclass(slots=True)
class RuleRow:
    """A rule and the session (link index) that reported it, which edits go through."""

    link: int
    rule: Rule


class RulesTable(DataTable[Cell]):
    BINDINGS = [
        Binding("space", "act('toggle')", "On/off", id="rules.toggle"),
        Binding("x", "act('delete')", "Delete", id="rules.delete"),
        Binding("e,enter", "act('edit')", "Edit", id="rules.edit"),
        Binding("n", "act('new')", "New", id="rules.new"),
        Binding("w", "act('explain')", "Explain", id="rules.explain"),
    ]

    def action_act(self, what: str) -> None:
        key = None
        if self.row_count:
            key = self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value
        if key is None and what not in ("new", "explain"):
            return
        self.post_message(RulesView.Act(what, key))


class RulesView(Vertical):
    """Rules merged across sessions by id (sessions normally share one rule store)."""

    class Act(Message):
        """toggle / delete / edit / new / explain, on the rule with id ``key``."""

        def __init__(self, what: str, key: str | None) -> None:
            super().__init__()
            self.what, self.key = what, key

    def __init__(self, clock: Callable[[], float], id: str | None = None) -> None:
        super().__init__(id=id)
        self.clock = clock
        self.by_link: dict[int, list[Rule]] = {}
        self.rows: dict[str, RuleRow] = {}
        self.note_width = 12  # what is left of the width; the detail line has it all
        self.shown = True
        self._stale = False  # rules changed while the tab was hidden: redraw when shown

    def compose(self) -> ComposeResult:
        table = RulesTable(cursor_type="row", zebra_stripes=True, id="rules-table")
        table.add_column(Text("Id", justify="right"), key="id", width=4)
        table.add_column("On", key="on", width=2)
        table.add_column("Action", key="action", width=6)
        table.add_column("Target", key="target", width=TARGET_WIDTH)
        table.add_column("Lifetime", key="life", width=9)
        table.add_column(Text("Hits", justify="right"), key="hits", width=5)
        table.add_column("Source / note", key="note")
        yield table
        yield Static("", classes="detail")

    def on_mount(self) -> None:
        self._show_detail()

    def on_resize(self) -> None:
        width = max(12, self.size.width - FIXED_WIDTH)
        if width != self.note_width:
            self.note_width = width
            self._rebuild()

    def set_shown(self, shown: bool) -> None:
        """While the tab is hidden, rule changes redraw nothing until it is shown."""
        self.shown = shown
        if shown and self._stale:
            self._rebuild()

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        event.stop()
        self._show_detail()

    def _show_detail(self) -> None:
        row = self.selected()
        if row is None:
            text = "No rules yet: n adds one." if not self.rows else ""
        else:
            r = row.rule
            what = f"{safe(r.action)} {rule_target(r, NAME_WIDTH)}"
            parts = [f"rule {r.id}: {what}", lifetime_text(r, self.clock(), LIFETIME_PARTS)]
            parts += [f"program {safe(r.exe)}"] if r.exe else []
            parts += [f"scope {safe(r.scope)}"] if r.scope != "global" else []
            parts += [f"priority {r.priority}"] if r.priority else []
            parts += [f"{r.hits} hits"] + ([f"last {clock_time(r.last_hit)}"] if r.last_hit else [])
            parts += [f"from {safe(r.source)}"] + ([safe(r.note)] if r.note else [])
            text = " · ".join(parts)
        self.query_one(".detail", Static).update(Text(text))

    def set_rules(self, link: int, rules: Iterable[Rule]) -> None:
        self.by_link[link] = list(rules)
        self._rebuild()

    def drop(self, link: int) -> None:
        self.by_link.pop(link, None)
        self._rebuild()

    def get(self, key: str | None) -> RuleRow | None:
        return None if key is None else self.rows.get(key)

    def selected(self) -> RuleRow | None:
        table = self.query_one(RulesTable)
        if not table.row_count:
            return None
        return self.get(table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value)

    def tick(self) -> None:
        """Refresh the time left of expiring rules."""
        if not self.shown:
            return
        table = self.query_one(RulesTable)
        now = self.clock()
        for key, row in self.rows.items():
            if row.rule.expires_at is not None:
                style = "" if row.rule.enabled else "dim"
                table.update_cell(
                    key, "life", Text(lifetime_text(row.rule, now, LIFETIME_PARTS), style=style)
                )

    def _rebuild(self) -> None:
        rows: dict[str, RuleRow] = {}
        for link in sorted(self.by_link):
            for rule in self.by_link[link]:
                key = str(rule.id)
                if rule.id is not None and key not in rows:
                    rows[key] = RuleRow(link, rule)
        if not self.shown:
            self.rows, self._stale = rows, True
            return
        self._stale = False
        table = self.query_one(RulesTable)
        current = self.selected()
        table.clear()
        now = self.clock()
        for key, row in sorted(rows.items(), key=lambda kv: int(kv[0])):
            table.add_row(*self._cells(row.rule, now), key=key)
        self.rows = rows
        if current is not None and str(current.rule.id) in rows:
            table.move_cursor(row=table.get_row_index(str(current.rule.id)), animate=False)
        self._show_detail()

    def _cells(self, rule: Rule, now: float) -> list[Cell]:
        dim = "" if rule.enabled else "dim"
        action = Text(safe(rule.action), style="green" if rule.action == "allow" else "red")
        note = safe(rule.source + (f": {rule.note}" if rule.note else ""))
        if len(note) > self.note_width:
            note = note[: self.note_width - 1] + "…"
        return [
            Text(str(rule.id), justify="right", style=dim),
            Text("✓" if rule.enabled else "✗", style="green" if rule.enabled else "red"),
            action if rule.enabled else Text(safe(rule.action), style="dim"),
            Text(rule_target(rule, TARGET_WIDTH), style=dim),
            Text(lifetime_text(rule, now, LIFETIME_PARTS), style=dim),
            Text(str(rule.hits), justify="right", style=dim),
            Text(note, style="dim"),
        ]
