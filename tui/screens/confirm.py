"""A yes/no question in a dialog."""

from __future__ import annotations

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static


class ConfirmDialog(ModalScreen[bool]):
    """``question`` is a ``Text`` (never markup: it may quote what the sandbox sent).

    ``enter=False``: only ``y`` says yes (for a question a stray enter must not answer).
    """

    BINDINGS = [
        Binding("y", "dismiss(True)", "Yes", id="confirm.yes"),
        Binding("enter", "enter", "Yes", show=False, id="confirm.enter"),
        Binding("n,escape", "dismiss(False)", "No", id="confirm.no"),
    ]

    def __init__(self, question: Text, *, title: str = "Confirm", enter: bool = True) -> None:
        super().__init__()
        self.question = question
        self.title_ = title
        self.enter = enter

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm", classes="dialog") as box:
            box.border_title = self.title_
            yield Static(self.question, id="confirm-question")
            with Horizontal(classes="buttons"):
                for button in (
                    Button(Text("Yes [y]"), variant="error", id="yes", compact=True),
                    Button(Text("No [n]"), id="no", compact=True),
                ):
                    button.can_focus = False  # keys go to the bindings; clicks still work
                    yield button

    def action_enter(self) -> None:
        if self.enter:
            self.dismiss(True)

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")
