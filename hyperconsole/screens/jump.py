"""`:` — go to a pane by name, k9s-style: type a few letters, `tab`/`right` completes, `enter` goes."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import ModalScreen
from textual.suggester import SuggestFromList
from textual.widgets import Footer, Input, Static


def match(text: str, names: list[str]) -> str | None:
    """The pane a typed word means: an exact name, else the only one it starts."""
    text = text.strip().casefold()
    if text in names:
        return text
    starts = [n for n in names if n.startswith(text)]
    return starts[0] if text and len(starts) == 1 else None


class JumpScreen(ModalScreen[str | None]):
    DEFAULT_CSS = """
    JumpScreen { align: center top; }
    JumpScreen > Static { width: 60; margin-top: 3; background: $surface; padding: 0 1; color: $text-muted; }
    JumpScreen > Input { width: 60; }
    """
    BINDINGS = [
        Binding("escape", "cancel", "Cancel", id="jump.cancel"),
        Binding("tab", "complete", "Complete", id="jump.complete"),
    ]

    def __init__(self, names: list[str]) -> None:
        super().__init__()
        self.names = names

    def compose(self) -> ComposeResult:
        yield Static("go to: " + " · ".join(self.names), markup=False)
        yield Input(placeholder=":pane", suggester=SuggestFromList(self.names, case_sensitive=False))
        yield Footer()

    def action_complete(self) -> None:
        box = self.query_one(Input)
        if (name := match(box.value, self.names)) is not None:
            box.value = name
            box.cursor_position = len(name)

    @on(Input.Submitted)
    def _go(self, event: Input.Submitted) -> None:
        name = match(event.value, self.names)
        if name is None:
            self.notify(f"no pane {event.value.strip()!r} (have: {', '.join(self.names)})", severity="warning",
                        markup=False)
            return
        self.dismiss(name)

    def action_cancel(self) -> None:
        self.dismiss(None)
