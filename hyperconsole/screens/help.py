"""`?`: every key that works where the operator is (the focused table, its pane, or the dialog
on top, and the app), generated from the bindings themselves, with their ids for a keymap."""

from __future__ import annotations

from typing import NamedTuple

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen, Screen
from textual.widgets import DataTable, Footer, Static


class KeyRow(NamedTuple):
    key: str
    description: str
    action: str
    id: str


def binding_rows(screen: Screen) -> list[KeyRow]:
    """Every enabled binding active on `screen` (what a key press there would really run)."""
    rows = []
    seen = set()
    for active in screen.active_bindings.values():
        binding = active.binding
        if not active.enabled or binding.action in seen or binding.action.startswith(("focus", "scroll")):
            continue
        seen.add(binding.action)
        rows.append(KeyRow(screen.app.get_key_display(binding), binding.description or binding.action,
                           binding.action, binding.id or ""))
    return rows


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,question_mark,q", "dismiss", "Close", id="help.close")]

    def __init__(self, under: Screen) -> None:
        super().__init__()
        self.rows = binding_rows(under)
        name = getattr(under, "PANE_TITLE", "") or under.__class__.__name__.removesuffix("Screen")
        self.title_text = f"Keys — {name}"

    def compose(self) -> ComposeResult:
        with Vertical(id="help"):
            yield Static(self.title_text, classes="box-title")
            table: DataTable = DataTable(cursor_type="row", id="help-table")
            table.add_columns("Key", "Action", "Binding id")
            for row in self.rows:
                table.add_row(Text(row.key, "bold"), Text(row.description), Text(row.id, "dim"))
            table.add_row(Text("ctrl+p", "bold"), Text("command palette: every action by name"), Text(""))
            yield table
            yield Static("esc closes · binding ids are what a keymap in the config remaps", classes="hint")
        yield Footer()

    def action_dismiss(self) -> None:
        self.dismiss(None)
