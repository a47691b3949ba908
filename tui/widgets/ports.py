"""What listens in the sandboxes, and the forwards to it. ``f`` asks for a forward of the
selected port to 127.0.0.1 on the same port number; the app talks to the gateway."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import DataTable, Static

from snitch.core.safetext import safe

Cell = str | Text


@dataclass(slots=True)
class PortRow:
    link: int
    session: str
    proto: str
    port: int
    addr: str
    forward: str  # "127.0.0.1:8000" or ""
    process: str = ""  # what the host could tell of the program that opened it

    @property
    def loopback(self) -> bool:
        """Bound to the sandbox's loopback: a forward cannot reach it."""
        return self.addr.startswith("127.")


class PortsTable(DataTable[Cell]):
    BINDINGS = [Binding("f", "forward", "Forward", id="ports.forward")]

    def action_forward(self) -> None:
        if self.row_count:
            key = self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value
            if key is not None:
                self.post_message(PortsView.Forward(key))


class PortsView(Vertical):
    """One row per listening socket of every session."""

    class Forward(Message):
        def __init__(self, key: str) -> None:
            super().__init__()
            self.key = key

    def __init__(self, multi: bool = False, id: str | None = None) -> None:
        super().__init__(id=id)
        self.multi = multi
        self.by_link: dict[int, tuple[str, dict[str, Any]]] = {}
        self.rows: dict[str, PortRow] = {}

    def compose(self) -> ComposeResult:
        table = PortsTable(cursor_type="row", zebra_stripes=True, id="ports-table")
        if self.multi:
            table.add_column("Session", key="session", width=8)
        table.add_column("Port", key="port", width=10)
        table.add_column("Bound to", key="addr", width=15)
        table.add_column("Process", key="process", width=20)
        table.add_column("Forward", key="forward")
        yield table
        yield Static("", classes="detail")

    def on_mount(self) -> None:
        self._detail()

    def set_state(self, link: int, session: str, state: dict[str, Any]) -> list[PortRow]:
        """The gateway's ``ports`` state for a session; returns the rows new to it."""
        old = {k for k, r in self.rows.items() if r.link == link}
        self.by_link[link] = (session, state)
        self._rebuild()
        return [r for k, r in self.rows.items() if r.link == link and k not in old]

    def drop(self, link: int) -> None:
        self.by_link.pop(link, None)
        self._rebuild()

    def get(self, key: str) -> PortRow | None:
        return self.rows.get(key)

    def _rebuild(self) -> None:
        rows: dict[str, PortRow] = {}
        for link in sorted(self.by_link):
            session, state = self.by_link[link]
            forwards = {int(f["port"]): f for f in state.get("forwards", [])}
            for item in state.get("listening", []):
                proto, port = str(item.get("proto")), int(item.get("port", 0))
                fwd = forwards.get(port) if proto == "tcp" else None
                target = f"{fwd.get('bind', '127.0.0.1')}:{fwd['host_port']}" if fwd else ""
                addr, process = str(item.get("addr", "")), str(item.get("process", ""))
                rows[f"{link}/{proto}/{port}"] = PortRow(link, session, proto, port, addr, target,
                                                        process)  # fmt: skip
        table = self.query_one(PortsTable)
        table.clear()
        for key, row in rows.items():
            cells: list[Cell] = [f"{row.port}/{safe(row.proto)}", safe(row.addr),
                                 safe(row.process)[:20]]
            cells.append(Text(f"→ {safe(row.forward)}", style="green") if row.forward
                         else Text(self._hint(row), style="dim"))  # fmt: skip
            if self.multi:
                cells.insert(0, safe(row.session[:8]))
            table.add_row(*cells, key=key)
        self.rows = rows
        self._detail()

    @staticmethod
    def _hint(row: PortRow) -> str:
        if row.proto != "tcp":
            return ""
        if row.loopback:
            return "its loopback only: not forwardable"
        return "f: forward to 127.0.0.1"

    def _detail(self) -> None:
        text = ("Nothing listens in the sandbox yet." if not self.rows else
                "f forwards the selected TCP port to 127.0.0.1 (same number); "
                "`coderun run -p HOSTPORT:PORT` does it up front.")  # fmt: skip
        self.query_one(".detail", Static).update(Text(text))
