"""One line above the footer: connection state, URI, READ-ONLY badge, last message."""

from __future__ import annotations

from rich.text import Text
from textual.reactive import reactive
from textual.widgets import Static

from hyperconsole.sanitize import visible

# Connection states by their value ("active", …): the widget takes data, not core types.
_STATE_STYLE = {"active": "bold green", "connecting": "bold yellow", "disconnected": "bold red"}


class StatusBar(Static):
    DEFAULT_CSS = """
    StatusBar { height: 1; background: $boost; color: $text; padding: 0 1; }
    """

    state: reactive[str] = reactive("disconnected")
    uri: reactive[str] = reactive("")
    readonly: reactive[bool] = reactive(False)
    demo: reactive[bool] = reactive(False)
    simulated: reactive[bool] = reactive(False)
    message: reactive[str] = reactive("")
    pending: reactive[str] = reactive("")

    def render(self) -> Text:
        text = Text(no_wrap=True, overflow="ellipsis")
        text.append(f"● {self.state}", _STATE_STYLE.get(self.state, "bold red"))
        text.append("  ")
        text.append(visible(self.uri))
        if self.demo:
            text.append("  ")
            text.append(" DEMO ", "bold black on cyan")
        if self.simulated:
            text.append("  ")
            text.append("VM figures simulated", "cyan")
        if self.readonly:
            text.append("  ")
            text.append(" READ-ONLY ", "bold white on dark_red")
        if self.pending:
            text.append("  ")
            text.append(f" {self.pending} ", "bold black on yellow")
        if self.message:
            text.append("  ")
            text.append(visible(self.message), "italic")
        return text
