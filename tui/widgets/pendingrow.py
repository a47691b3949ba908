"""A pending item as the dashboard holds it (``PendingRow``: the item and its session)
and the line that describes it under the queue and in the decision dialog."""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text

from snitch.core.model import Pending, PendingKind
from snitch.core.process import describe_process
from tui.inert import plain, shown_name

CMDLINE_SHOWN = 80


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


def describe(row: PendingRow) -> Text:
    """The detail line under the table (and the dialog's summary) for an item."""
    p = row.item
    if p.kind == PendingKind.FILE:
        return _describe_file(row)
    if p.kind == "dns":
        what = f"DNS lookup of {shown_name(p.label)} from {safe_cell(p.src)}"
    elif p.kind == PendingKind.REQUEST:
        size = f" · {p.size} bytes" if p.size else ""
        kind = f" · {safe_cell(p.content_type)}" if p.content_type else ""
        what = (f"HTTP request {safe_cell(p.method)} {safe_cell(p.url)}{size}{kind} to "
                f"{shown_name(p.label)} from {safe_cell(p.src)}:{p.sport} (its connection "
                "goes on; a lasting answer is for this method under the URL's folder)")  # fmt: skip
    else:
        dst, proto = safe_cell(p.dst), safe_cell(p.proto)
        target = f"{dst}:{p.dport}/{proto}" if p.dport else f"{dst} {proto}"
        name = f"{shown_name(p.label)} → " if p.names else ""
        what = f"{name}{target} from {safe_cell(p.src)}:{p.sport}"
    text = Text(what)
    if p.pid:
        text.append(" · by ")
        text.append(safe_cell(describe_process(p.exe, p.pid, p.parents)), style="bold")
        if p.cmdline:
            text.append(f" · {safe_cell(p.cmdline[:200])}", style="dim")
    if p.claimed:
        text.append(" · claims ")
        text.append(shown_name(p.claimed), style="italic")
        text.append(" (unverified: a lasting decision is for the address)", style="bold red")
    if p.synthetic:
        text.append(" · address made up by coderun: rules go by name")
    if p.flows > 1:
        text.append(f" · {p.flows} connections")
    if p.attempts > 1:
        text.append(f" · {p.attempts} attempts")
    text.append(f" · session {safe_cell(row.session)}")
    return text


def _describe_file(row: PendingRow) -> Text:
    """A held open: the path (and where the sandbox sees it), read or write, the process."""
    p = row.item
    text = Text(f"open for {safe_cell(p.access)} of ")
    text.append(safe_cell(p.path), style="bold")
    if p.dst and p.dst != p.path:
        text.append(f" ({safe_cell(p.dst)} in the sandbox)")
    if p.pid:
        text.append(f" · pid {p.pid}")
    if p.cmdline:
        command = safe_cell(p.cmdline)
        if len(command) > CMDLINE_SHOWN:
            command = command[: CMDLINE_SHOWN - 1] + "…"
        text.append(f" · {command}", style="italic")
    if p.flows > 1:
        text.append(f" · {p.flows} opens")
    text.append(f" · session {safe_cell(row.session)}")
    return text


def safe_cell(value: object) -> str:
    return plain(value).plain
