"""A labelled horizontal bar: `CPU  ███████░░░░░  58.1%  extra`."""

from __future__ import annotations

from rich.text import Text
from textual.reactive import reactive
from textual.widget import Widget


class Gauge(Widget):
    DEFAULT_CSS = """
    Gauge { height: 1; width: 1fr; }
    """

    value: reactive[float | None] = reactive(None)
    extra: reactive[str] = reactive("")

    def __init__(self, label: str, *, warn: float = 75.0, alert: float = 90.0, **kwargs) -> None:
        super().__init__(**kwargs)
        self.label = label
        self.warn = warn
        self.alert = alert

    def render(self) -> Text:
        width = max(self.size.width, 20)
        label = f"{self.label:<8}"
        tail = f" {self.value:5.1f}% " if self.value is not None else "   –   "
        extra = f" {self.extra}" if self.extra else ""
        bar_width = max(4, width - len(label) - len(tail) - len(extra))
        value = max(0.0, min(100.0, self.value or 0.0))
        filled = round(bar_width * value / 100)
        style = "green" if value < self.warn else ("yellow" if value < self.alert else "bold red")
        text = Text(no_wrap=True, overflow="ellipsis")
        text.append(label, "bold")
        text.append("█" * filled, style)
        text.append("░" * (bar_width - filled), "bright_black")
        text.append(tail)
        text.append(extra, "italic")
        return text
