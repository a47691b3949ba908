"""A compact radio set whose arrow keys choose at once (no extra space/enter)."""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual.widgets import RadioButton, RadioSet


class ChoiceSet(RadioSet):
    """Options as ``(value, label)``; ``value`` is the chosen option's value. A ``str``
    label is Textual markup: anything the sandbox controls goes in a ``Text``."""

    def __init__(
        self,
        options: Sequence[tuple[str, str | Text]],
        *,
        selected: str | None = None,
        disabled_values: Sequence[str] = (),
        horizontal: bool = False,
        id: str | None = None,
    ) -> None:
        self.values = [value for value, _ in options]
        chosen = selected if selected in self.values else self.values[0]
        buttons = [
            RadioButton(label, value=value == chosen, disabled=value in disabled_values, name=value)
            for value, label in options
        ]
        super().__init__(*buttons, id=id, compact=True, classes="-horizontal" if horizontal else "")
        self._ready = False  # RadioSet's own mount moves the highlight: don't choose then

    def on_mount(self) -> None:
        self.call_later(self._arm)  # after RadioSet's own mount handler, which runs later

    def _arm(self) -> None:
        if self.pressed_index >= 0:
            self._selected = self.pressed_index
        self._ready = True

    @property
    def value(self) -> str:
        button = self.pressed_button
        return self.values[0] if button is None or button.name is None else button.name

    def action_next_button(self) -> None:
        super().action_next_button()
        if self._ready:
            self.action_toggle_button()

    def action_previous_button(self) -> None:
        super().action_previous_button()
        if self._ready:
            self.action_toggle_button()
