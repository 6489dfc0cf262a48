"""A small modal form: labelled inputs, `enter` submits, `esc` cancels; returns a dict or None."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Static


class InputDialog(ModalScreen[dict[str, str] | None]):
    BINDINGS = [Binding("escape", "cancel", "Cancel", id="form.cancel")]

    def __init__(self, title: str, fields: list[tuple[str, str, str]]) -> None:
        """fields: (key, label, initial value)."""
        super().__init__()
        self.title_text = title
        self.fields = fields

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(self.title_text, classes="box-title", markup=False)
            for key, label, value in self.fields:
                with Horizontal(classes="row"):
                    yield Static(label, classes="label", markup=False)
                    yield Input(value, id=f"f-{key}")
            yield Static("", id="form-error", classes="error", markup=False)
            yield Static("enter submits · esc cancels", classes="hint")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.dismiss({key: self.query_one(f"#f-{key}", Input).value for key, _l, _v in self.fields})

    def action_cancel(self) -> None:
        self.dismiss(None)
