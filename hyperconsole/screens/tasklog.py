"""Task log (`l` from every pane): every operator job and host change of this session and earlier
ones, newest first, with start and end time, result and target; the full error or outcome of
the row under the cursor below the table. Toasts fade; this stays."""

from __future__ import annotations

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import Static

from hyperconsole import resources
from hyperconsole.presenters import clock, result_text
from hyperconsole.sanitize import visible, visible_lines
from hyperconsole.screens.base import PaneScreen
from hyperconsole.tasklog import Task
from hyperconsole.widgets.resource_view import ResourceView


def newest_first(tasks: tuple[Task, ...]) -> list[Task]:
    return sorted(tasks, key=lambda task: task.started, reverse=True)


def describe(task: Task) -> Text:
    """Everything the log knows about one entry; system text shown literally (never as markup,
    control characters made visible), line breaks kept."""
    text = Text()
    text.append(visible(task.label), "bold")
    if task.target:
        text.append(f"   on {visible(task.target)}")
    text.append("\n")
    text.append(f"started {clock(task.started)}")
    if task.ended is not None:
        text.append(f", ended {clock(task.ended)} ({task.ended - task.started:.1f} s)")
    text.append("   ")
    text.append_text(result_text(task))
    if task.error:
        text.append("\n")
        text.append(visible_lines(task.error), "red")
    elif task.detail:
        text.append("\n" + visible_lines(task.detail))
    return text


class TaskLogScreen(PaneScreen):
    PANE_TITLE = "Task log"
    BINDINGS = [
        Binding("escape,l", "close", "Close", id="tasks.close"),
    ]

    def compose_body(self) -> ComposeResult:
        yield resources.TASKS.view()
        yield Static("", id="task-detail")

    @property
    def view(self) -> ResourceView:
        return self.query_one("#tasks", ResourceView)

    def on_mount(self) -> None:
        self.title = "Task log"
        self.view.focus()

    def render_data(self, kinds: frozenset[str]) -> None:
        if kinds & {"all", "tasks"}:
            self.view.set_items(resources.TASKS.rows(self.hc.tasks.tasks))
            self._show_detail()

    def cursor_task(self) -> Task | None:
        key = self.view.cursor_key
        return self.hc.tasks.get(key) if key is not None else None

    @on(ResourceView.Highlighted, "#tasks")
    def _show_detail(self, _event: ResourceView.Highlighted | None = None) -> None:
        task = self.cursor_task()
        detail = self.query_one("#task-detail", Static)
        if task is None:
            detail.update(Text("Nothing done yet: every action and host change appears here.", "dim"))
        else:
            detail.update(describe(task))

    def action_close(self) -> None:
        self.dismiss()
