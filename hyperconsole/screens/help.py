"""`?`: every key of the pane underneath and of the app, generated from the bindings themselves."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen, Screen
from textual.widgets import DataTable, Static

DIALOG_KEYS = (("y", "confirm a question"), ("n / esc", "cancel a question"))


def binding_rows(screen: Screen) -> list[tuple[str, str, str]]:
    """(key, description, action) for every enabled binding active on `screen`."""
    rows = []
    seen = set()
    for key, active in screen.active_bindings.items():
        binding = active.binding
        if not active.enabled or binding.action in seen or binding.action.startswith(("focus", "scroll")):
            continue
        seen.add(binding.action)
        rows.append((screen.app.get_key_display(binding), binding.description or binding.action, binding.action))
    return rows


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,question_mark,q", "dismiss", "Close", id="help.close")]

    def __init__(self, under: Screen) -> None:
        super().__init__()
        self.rows = binding_rows(under)
        self.title_text = f"Keys — {under.__class__.__name__.removesuffix('Screen')}"

    def compose(self) -> ComposeResult:
        with Vertical(id="help"):
            yield Static(self.title_text, classes="box-title")
            table: DataTable = DataTable(cursor_type="row", id="help-table")
            table.add_columns("Key", "Action")
            for key, description, _action in self.rows:
                table.add_row(Text(key, "bold"), Text(description))
            for key, description in DIALOG_KEYS:
                table.add_row(Text(key, "bold"), Text(description))
            table.add_row(Text("ctrl+p", "bold"), Text("command palette: every action by name"))
            yield table
            yield Static("esc closes", classes="hint")

    def action_dismiss(self) -> None:
        self.dismiss(None)
