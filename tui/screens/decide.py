"""Dialogs that answer pending items: one item with a scope, or a batch by pattern."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.timer import Timer
from textual.widgets import Button, Input, Label, RadioButton, Static

from snitch.core.fileask import folder_glob
from snitch.core.grammar import is_address, network_of, parent_pattern
from snitch.core.model import Action, DecisionRequest, PendingKind, Target
from snitch.core.safetext import safe
from tui.format import LIFETIMES, countdown, host_name
from tui.inert import shown_name
from tui.widgets.choice import ChoiceSet
from tui.widgets.pendingrow import PendingRow, describe

LIFETIME_LABELS = {"session": "this session"}
TARGET_NAME_WIDTH = 48
PREVIEW_NAME_WIDTH = 30


def lifetime_choice(selected: str = "once", id: str = "lifetime") -> ChoiceSet:
    options = [(life, LIFETIME_LABELS.get(life, life)) for life in LIFETIMES]
    return ChoiceSet(options, selected=selected, horizontal=True, id=id)


def field_row(label: str, *widgets: Static | ChoiceSet | Input) -> Horizontal:
    return Horizontal(Label(label, classes="field-label"), *widgets, classes="field-row")


def action_buttons() -> Horizontal:
    return Horizontal(
        Button(Text("Allow [a]"), variant="success", id="allow", compact=True),
        Button(Text("Deny [d]"), variant="error", id="deny", compact=True),
        Button(Text("Cancel [esc]"), id="cancel", compact=True),
        classes="buttons",
    )


class AllowDenyScreen(ModalScreen[DecisionRequest | None]):
    """A dialog with the ``action_buttons()``: allow and deny decide, cancel dismisses."""

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "cancel":
            self.dismiss(None)
        elif event.button.id in ("allow", "deny"):
            self.action_decide(event.button.id)

    def action_decide(self, action: str) -> None:
        raise NotImplementedError


class DecisionDialog(AllowDenyScreen):
    """Allow or deny one item, choosing the rule's target, port and lifetime."""

    BINDINGS = [
        Binding("a", "decide('allow')", "Allow", id="decide.allow"),
        Binding("d", "decide('deny')", "Deny", id="decide.deny"),
        Binding("escape", "dismiss(None)", "Cancel", id="decide.cancel"),
    ]

    def __init__(self, row: PendingRow, clock: Callable[[], float]) -> None:
        super().__init__()
        self.row = row
        self.clock = clock
        item = row.item
        self.name_ = host_name(item)
        # a synthetic address is coderun's own stand-in for a name: never a rule's target
        self.has_ip = item.kind != "dns" and is_address(item.dst) and not item.synthetic
        self._timer: Timer | None = None

    def compose(self) -> ComposeResult:
        item = self.row.item
        name = self.name_ or ""
        no_name = [] if self.name_ else ["host", "domain"]
        no_ip = [] if self.has_ip else ["ip", "cidr"]
        width = TARGET_NAME_WIDTH
        domain = shown_name(parent_pattern(name), width) if name else "*.parent-domain"
        targets: list[tuple[str, str | Text]] = [
            ("host", Text(f"this host {shown_name(name, width)}" if name else "this host")),
            ("domain", Text(domain)),
            ("ip", self._ip_label()),
            ("cidr", self._cidr_label(24)),
        ]
        dns = item.kind == "dns"
        ports = [("this", "any lookup" if dns else f"this port {item.dport}"), ("any", "any port")]
        if item.kind == PendingKind.FILE:  # a file rule: the file or its folder, an access
            targets[:2] = [
                ("host", Text(f"this file {safe(item.path)}")),
                ("domain", Text(f"its folder {safe(folder_glob(item.path))}")),
            ]
            ports = [("this", f"{safe(item.access)} only"), ("any", "read and write")]
        with Vertical(id="dialog", classes="dialog") as box:
            box.border_title = "Decide"
            summary = describe(self.row)
            summary.stylize_before("bold")
            yield Static(summary, id="dialog-summary")
            yield Static("", id="dialog-countdown")
            yield field_row(
                "Target",
                ChoiceSet(
                    targets,
                    selected="host" if self.name_ else "ip",
                    disabled_values=no_name + no_ip,
                    id="target",
                ),
            )
            yield field_row(
                "Prefix",
                Input("24", type="integer", max_length=3, compact=True, id="prefix"),
                Static("(for CIDR)", classes="hint"),
            )
            yield field_row(
                "Port",
                ChoiceSet(
                    ports,
                    selected="any" if dns else "this",
                    disabled_values=["this"] if dns else [],
                    horizontal=True,
                    id="port",
                ),
            )
            yield field_row("For", lifetime_choice())
            yield action_buttons()

    def on_mount(self) -> None:
        self._tick()
        self._timer = self.set_interval(1.0, self._tick)
        self.query_one("#target", ChoiceSet).focus()

    def _tick(self) -> None:
        deadline = self.row.item.deadline
        line = self.query_one("#dialog-countdown", Static)
        if deadline:
            line.update(Text.assemble("time left: ", countdown(deadline - self.clock())))

    def _ip_label(self) -> Text:
        if self.row.item.synthetic:
            return Text("this IP (made up by coderun)")
        return Text(f"this IP {safe(self.row.item.dst)}" if self.has_ip else "this IP")

    def _cidr_label(self, prefix: int) -> Text:
        if not self.has_ip:
            return Text("a CIDR")
        return Text(f"CIDR {network_of(self.row.item.dst, prefix)}")

    def _prefix(self) -> int:
        text = self.query_one("#prefix", Input).value
        limit = 32 if "." in self.row.item.dst else 128
        try:
            return min(max(int(text), 1), limit)
        except ValueError:
            return 24

    @on(Input.Changed, "#prefix")
    def _prefix_changed(self) -> None:
        button = self.query_one("#target", ChoiceSet).query(RadioButton)[3]
        button.label = self._cidr_label(self._prefix())

    def action_decide(self, action: str) -> None:
        self.dismiss(self.request(Action(action)))

    def request(self, action: Action) -> DecisionRequest:
        """The request the dialog's current choices make."""
        return DecisionRequest(
            action=action,
            pending_id=self.row.item.id,
            target=Target(self.query_one("#target", ChoiceSet).value),
            port=self.query_one("#port", ChoiceSet).value,
            lifetime=self.query_one("#lifetime", ChoiceSet).value,
            cidr_prefix=self._prefix(),
        )


class BatchDialog(AllowDenyScreen):
    """Allow or deny every pending item whose name matches a pattern.

    Enter in the pattern moves on, so ``a``/``d`` can decide. ``matcher`` lists the
    items a pattern covers (across sessions), for the preview.
    """

    BINDINGS = [
        Binding("a", "decide('allow')", "Allow", id="batch.allow"),
        Binding("d", "decide('deny')", "Deny", id="batch.deny"),
        Binding("escape", "dismiss(None)", "Cancel", id="batch.cancel"),
    ]

    def __init__(self, pattern: str, matcher: Callable[[str], Sequence[str]]) -> None:
        super().__init__()
        self.pattern = pattern
        self.matcher = matcher

    def compose(self) -> ComposeResult:
        with Vertical(id="batch", classes="dialog") as box:
            box.border_title = "Decide every pending item matching a pattern"
            yield field_row("Pattern", Input(self.pattern, compact=True, id="pattern"))
            yield Static("", id="batch-preview")
            yield field_row("For", lifetime_choice())
            yield Static("enter: done typing, then a / d", classes="hint")
            yield action_buttons()

    def on_mount(self) -> None:
        self._preview(self.pattern)
        self.query_one("#pattern", Input).focus()

    @on(Input.Changed, "#pattern")
    def _changed(self, event: Input.Changed) -> None:
        self._preview(event.value)

    def _preview(self, pattern: str) -> None:
        labels = self.matcher(pattern.strip())
        names = [shown_name(label, PREVIEW_NAME_WIDTH) for label in labels[:3]]
        more = f" and {len(labels) - 3} more" if len(labels) > 3 else ""
        text = f"{len(labels)} pending: {', '.join(names)}{more}"
        if not labels:
            text = "no pending item matches"
        self.query_one("#batch-preview", Static).update(Text(text))

    @on(Input.Submitted, "#pattern")
    def _submitted(self) -> None:
        self.query_one("#lifetime", ChoiceSet).focus()

    def action_decide(self, action: str) -> None:
        pattern = self.query_one("#pattern", Input).value.strip()
        if not pattern:
            self.notify("Type a pattern such as *.example.test", severity="warning")
            return
        lifetime = self.query_one("#lifetime", ChoiceSet).value
        self.dismiss(DecisionRequest(Action(action), pattern=pattern, lifetime=lifetime))
