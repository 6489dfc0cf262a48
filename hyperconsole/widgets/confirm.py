"""A yes/no question for destructive actions: `y` confirms, `n` or `esc` cancels."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Checkbox, Footer, Static

from hyperconsole.sanitize import visible_lines


class ConfirmDialog(ModalScreen[bool | tuple[bool, bool]]):
    """Returns True/False, or (confirmed, option) when an option checkbox is offered."""

    DEFAULT_CSS = """
    ConfirmDialog { align: center middle; }
    ConfirmDialog > Vertical { width: 64; height: auto; border: thick $error; background: $surface; padding: 1 2; }
    ConfirmDialog .question { margin-bottom: 1; }
    ConfirmDialog Horizontal { height: auto; align-horizontal: right; }
    ConfirmDialog Button { margin-left: 2; }
    """
    BINDINGS = [
        Binding("y", "confirm", "Yes", id="confirm.yes"),
        Binding("n,escape", "cancel", "No", id="confirm.no"),
        Binding("o", "toggle_option", "Toggle option", show=False, id="confirm.option"),
    ]

    def __init__(self, question: str, detail: str = "", option: str | None = None,
                 option_value: bool = False) -> None:
        super().__init__()
        self.question = question
        self.detail = detail
        self.option = option
        self.option_value = option_value

    def compose(self) -> ComposeResult:
        with Vertical():
            # The question names VMs exactly as libvirt has them: no markup, controls made visible.
            yield Static(visible_lines(self.question), classes="question", markup=False)
            if self.detail:
                yield Static(visible_lines(self.detail), classes="detail", markup=False)
            if self.option is not None:
                yield Checkbox(f"{self.option} (o)", self.option_value, id="option")
            with Horizontal():
                yield Button("Yes (y)", variant="error", id="yes")
                yield Button("No (n)", variant="primary", id="no")
        yield Footer()  # over the pane's footer, whose keys do not work while this is open

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        return action != "toggle_option" or self.option is not None  # `o` only when there is an option

    def _result(self, confirmed: bool) -> bool | tuple[bool, bool]:
        if self.option is None:
            return confirmed
        return confirmed, self.query_one("#option", Checkbox).value

    def action_confirm(self) -> None:
        self.dismiss(self._result(True))

    def action_cancel(self) -> None:
        self.dismiss(self._result(False))

    def action_toggle_option(self) -> None:
        if self.option is not None:
            self.query_one("#option", Checkbox).toggle()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(self._result(event.button.id == "yes"))
