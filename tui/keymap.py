"""The dashboard's keys, remapped from a file (``~/.config/coderun/keys.toml``).

Every key binding of the dashboard has an id (``pending.allow``, ``app.quit``...); the
file maps ids to keys, one or more separated by commas, in Textual's key names::

    "pending.allow" = "y"
    "pending.deny" = "n"
    "app.quit" = "ctrl+q,q"

A binding the file does not name keeps its key. An unknown id or a malformed key is an
error naming the file and the id, before the dashboard starts.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator
from pathlib import Path

from textual.binding import Binding

from tui.app import DashboardApp
from tui.screens.confirm import ConfirmDialog
from tui.screens.decide import BatchDialog, DecisionDialog
from tui.screens.rules import ExplainDialog, RuleForm
from tui.widgets.pending import PendingTable
from tui.widgets.ports import PortsTable
from tui.widgets.rules import RulesTable
from tui.widgets.traffic import LogView

BOUND = (
    DashboardApp, PendingTable, RulesTable, LogView, PortsTable,
    DecisionDialog, BatchDialog, ConfirmDialog, RuleForm, ExplainDialog,
)  # fmt: skip
"""Every class of the dashboard that declares key bindings."""

KEY = re.compile(r"[A-Za-z0-9_]+(\+[A-Za-z0-9_]+)*|[^\s,]")
"""One key: a Textual key name with modifiers (``ctrl+r``, ``question_mark``) or one
printable character."""


class KeymapError(ValueError):
    """The keys file cannot be used (the message names the file and the entry)."""


def bindings() -> Iterator[Binding]:
    for cls in BOUND:
        for binding in cls.BINDINGS:
            if isinstance(binding, Binding):
                yield binding


def binding_ids() -> dict[str, str]:
    """Every binding id, with the key it has by default."""
    return {b.id: b.key for b in bindings() if b.id is not None}


def load_keymap(path: Path) -> dict[str, str]:
    """The keymap in ``path`` (binding id -> keys); empty when there is no such file."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as exc:
        raise KeymapError(f"{path}: cannot read it: {exc}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise KeymapError(f"{path}: {exc}") from None
    known = binding_ids()
    keymap: dict[str, str] = {}
    for binding_id, keys in data.items():
        if binding_id not in known:
            raise KeymapError(
                f"{path}: no key binding has the id {binding_id!r} "
                f"(the ids: {', '.join(sorted(known))})"
            )
        if not isinstance(keys, str) or not keys.strip():
            raise KeymapError(f"{path}: {binding_id}: keys are a string like \"y\" or \"y,ctrl+y\"")
        parts = [part.strip() for part in keys.split(",")]
        bad = [part for part in parts if not KEY.fullmatch(part)]
        if bad:
            raise KeymapError(f"{path}: {binding_id}: not a key: {bad[0]!r}")
        keymap[binding_id] = ",".join(parts)
    return keymap
