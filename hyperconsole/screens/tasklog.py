"""Task log (`l` from every pane): every operator job and host change of this session and earlier
ones, newest first, with start and end time, result and target; the full error or outcome of
the row under the cursor below the table. Toasts fade; this stays."""

from __future__ import annotations

import time

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.coordinate import Coordinate
from textual.widgets import DataTable, Static

from hyperconsole.presenters import plain
from hyperconsole.sanitize import visible, visible_lines
from hyperconsole.screens.base import PaneScreen
from hyperconsole.tasklog import Result, Task

RESULT_STYLES = {Result.RUNNING: "bold yellow", Result.OK: "green", Result.FAILED: "bold red",
                 Result.UNKNOWN: "dim"}
COLUMNS = (("started", "Started", 19), ("ended", "Ended", 10), ("result", "Result", 8),
           ("task", "Task", 44), ("target", "Target", None))


def clock(at: float | None, now: float | None = None) -> str:
    """HH:MM:SS today, the date too before today."""
    if at is None:
        return ""
    day = time.strftime("%Y-%m-%d", time.localtime(now if now is not None else time.time()))
    shown = time.localtime(at)
    return time.strftime("%H:%M:%S" if time.strftime("%Y-%m-%d", shown) == day else "%Y-%m-%d %H:%M:%S", shown)


def result_text(task: Task) -> Text:
    return Text(task.result.value, RESULT_STYLES[task.result])


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
    BINDINGS = [
        Binding("escape,l", "close", "Close", id="tasks.close"),
    ]

    def compose_body(self) -> ComposeResult:
        table: DataTable = DataTable(id="tasks", cursor_type="row", zebra_stripes=True)
        for key, label, width in COLUMNS:
            table.add_column(label, key=key, width=width)
        yield table
        yield Static("", id="task-detail")

    def on_mount(self) -> None:
        self.title = "Task log"
        self.query_one("#tasks", DataTable).focus()

    def render_data(self, kinds: frozenset[str]) -> None:
        if not kinds & {"all", "tasks"}:
            return
        table = self.query_one("#tasks", DataTable)
        cursor = self.cursor_task()
        table.clear()
        for task in newest_first(self.hc.tasks.tasks):
            table.add_row(clock(task.started), clock(task.ended), result_text(task), plain(task.label),
                          plain(task.target), key=task.id)
        if cursor is not None and self.hc.tasks.get(cursor.id) is not None:
            table.move_cursor(row=table.get_row_index(cursor.id), animate=False)
        self._show_detail()

    def cursor_task(self) -> Task | None:
        table = self.query_one("#tasks", DataTable)
        if not table.row_count:
            return None
        key, _ = table.coordinate_to_cell_key(Coordinate(table.cursor_row, 0))
        return self.hc.tasks.get(str(key.value))

    @on(DataTable.RowHighlighted, "#tasks")
    def _show_detail(self, _event: DataTable.RowHighlighted | None = None) -> None:
        task = self.cursor_task()
        detail = self.query_one("#task-detail", Static)
        if task is None:
            detail.update(Text("Nothing done yet: every action and host change appears here.", "dim"))
        else:
            detail.update(describe(task))

    def action_close(self) -> None:
        self.dismiss()
