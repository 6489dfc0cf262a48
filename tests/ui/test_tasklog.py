"""The task log: every operator job entered as it starts and ended by its outcome, shown by `l`
from every pane and on the dashboard, kept in the state dir for a later session; `q` asks first
while a job runs; the demo's serial console explains itself."""

from __future__ import annotations

import json
import os
import stat
import threading

from hyperconsole import paths, tasklog
from hyperconsole.messages import ActionDone
from hyperconsole.screens.tasklog import TaskLogScreen
from hyperconsole.tasklog import Result
from hyperconsole.virt import lifecycle
from hyperconsole.widgets.confirm import ConfirmDialog
from tests.ui.conftest import text_of, wait_until


def log_file():
    return paths.state_dir() / tasklog.FILE_NAME


def saved() -> list[dict]:
    return json.loads(log_file().read_text())["tasks"]


async def test_ok_and_failed_jobs_are_logged_with_times_target_and_the_full_error(make_app):
    async with make_app() as h:
        charlie = h.domain("charlie")
        # Past the screen's own state check, straight into libvirt: shutting down a shut-off VM.
        h.app.screen.run_op("shutdown charlie", lifecycle.shutdown, charlie.uuid, charlie.uuid)
        await h.settle()
        await h.cursor_to("charlie")
        await h.pilot.press("s")  # start charlie: works
        await h.settle()
        done = {m.label: m for m in h.of_type(ActionDone)}
        assert done["start charlie"].error is None and done["shutdown charlie"].error
        tasks = {t.label: t for t in h.app.tasks.tasks}
        failed, ok = tasks["shutdown charlie"], tasks["start charlie"]
        assert (ok.result, ok.target, failed.result, failed.target) == (Result.OK, "charlie", Result.FAILED, "charlie")
        assert ok.id == done["start charlie"].task and failed.error == done["shutdown charlie"].error
        assert failed.started <= failed.ended <= ok.started <= ok.ended

        await h.pilot.press("l")
        screen = h.app.screen
        assert isinstance(screen, TaskLogScreen)
        table = screen.view.table
        assert [table.get_row_at(i)[3].plain for i in range(table.row_count)] == ["start charlie", "shutdown charlie"]
        assert [table.get_row_at(i)[2].plain for i in range(table.row_count)] == ["ok", "failed"]
        assert "start charlie" in text_of(screen.query_one("#task-detail"))
        # The row under the cursor shows its error whole, below the table.
        await h.pilot.press("down")
        assert failed.error in text_of(screen.query_one("#task-detail"))
        await h.pilot.press("escape")
        assert not isinstance(h.app.screen, TaskLogScreen)


async def test_the_log_is_saved_0600_and_a_later_session_shows_it(make_app, tmp_path):
    async with make_app() as h:
        await h.cursor_to("charlie")
        await h.pilot.press("s")
        await wait_until(h.pilot, lambda: log_file().exists() and saved()[-1]["result"] == "ok", 10)
        first = h.app.tasks.tasks
    assert stat.S_IMODE(os.stat(log_file()).st_mode) == 0o600
    async with make_app() as h:
        await wait_until(h.pilot, lambda: h.app.tasks.tasks, 10)
        assert h.app.tasks.tasks == first
        await h.pilot.press("1")
        await h.settle()
        assert "start charlie" in text_of(h.app.screen.query_one("#recent-tasks"))


async def test_a_symlink_planted_at_the_log_is_refused_and_the_session_goes_on(make_app, tmp_path, caplog):
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    log_file().parent.mkdir(parents=True, exist_ok=True)
    log_file().symlink_to(victim)
    async with make_app() as h:
        await h.cursor_to("charlie")
        await h.pilot.press("s")
        await h.settle()
        assert [t.result for t in h.app.tasks.tasks] == [Result.OK]
        assert any("task log not saved" in r.getMessage() and "symbolic link" in r.getMessage()
                   for r in caplog.records)
    assert victim.read_text() == "precious\n" and log_file().is_symlink()


async def test_l_opens_the_log_from_every_pane(make_app):
    async with make_app() as h:
        for pane in ("1", "2", "3", "4"):
            await h.pilot.press(pane)
            await h.settle()
            await h.pilot.press("l")
            assert isinstance(h.app.screen, TaskLogScreen), pane
            await h.pilot.press("l")  # and closes it
            assert not isinstance(h.app.screen, TaskLogScreen), pane


async def test_a_running_job_shows_running_and_quit_asks_first(make_app, monkeypatch):
    release = threading.Event()

    def slow_start(manager, uuid):
        release.wait(30)

    monkeypatch.setattr(lifecycle, "start", slow_start)
    async with make_app() as h:
        try:
            await h.cursor_to("charlie")
            await h.pilot.press("s")
            await h.pilot.pause()
            assert [t.result for t in h.app.tasks.tasks] == [Result.RUNNING]
            await h.pilot.press("1")
            await h.pilot.pause()  # not settle: it waits for the job, which waits for us
            assert "running" in text_of(h.app.screen.query_one("#recent-tasks"))
            await h.pilot.press("q")
            dialog = h.app.screen
            assert isinstance(dialog, ConfirmDialog)
            assert dialog.question == "Still running: start charlie; quit anyway?"
            await h.pilot.press("n")
            assert h.app.return_code is None
        finally:
            release.set()
        await wait_until(h.pilot, lambda: h.app.tasks.tasks[0].result is Result.OK, 10)
        await h.pilot.press("q")  # nothing runs, nothing on trial: quits at once
        assert h.app.return_code == 0


async def test_serial_console_on_the_test_driver_explains_instead_of_running_virsh(make_app):
    async with make_app() as h:
        await h.cursor_to("alpha")
        await h.pilot.press("c")
        await h.pilot.pause()
        notes = list(h.app._notifications)
        assert [n.title for n in notes] == ["No console for alpha"]
        assert "test driver" in notes[0].message and "no serial console" in notes[0].message
        assert h.app.screen.query_one("#vms")  # still the VM list, never handed to virsh


async def test_system_text_in_the_log_is_shown_escaped_never_obeyed(make_app):
    async with make_app() as h:
        label = "start \x1b[2Jweb [red]x"
        task = h.app.begin_task(label, "\x1b[2Jweb [red]x")
        h.app.post_message(ActionDone(label, error="refused\n\x1b]0;owned\x07 by libvirt", task=task))
        await h.settle()
        await h.pilot.press("l")
        screen = h.app.screen
        row = screen.view.table.get_row_at(0)
        assert (row[3].plain, row[4].plain) == ("start \\x1b[2Jweb [red]x", "\\x1b[2Jweb [red]x")
        detail = text_of(screen.query_one("#task-detail")).splitlines()
        assert detail[-2:] == ["refused", "\\x1b]0;owned\\x07 by libvirt"]
        await h.pilot.press("l", "1")
        await h.settle()
        recent = text_of(h.app.screen.query_one("#recent-tasks"))
        assert "\\x1b[2Jweb [red]x" in recent and "\x1b" not in recent


async def test_the_cursor_stays_on_its_entry_when_a_new_one_arrives(make_app):
    async with make_app() as h:
        first = h.app.begin_task("first", "alpha")
        h.app.begin_task("second", "bravo")
        await h.pilot.press("l")
        await h.pilot.press("down")
        screen = h.app.screen
        assert screen.cursor_task().id == first
        h.app.begin_task("third", "charlie")  # a new row on top, while the log is open
        await h.pilot.pause()
        assert screen.view.table.row_count == 3
        assert screen.cursor_task().id == first
        assert text_of(screen.query_one("#task-detail")).startswith("first")


async def test_the_log_is_a_resource_view_filtered_and_sorted_like_every_table(make_app):
    async with make_app() as h:
        h.app.begin_task("start alpha", "alpha")
        h.app.begin_task("start bravo", "bravo")
        h.app.begin_task("stop alpha", "alpha")
        await h.pilot.press("l")
        await h.pilot.pause()
        view = h.app.screen.view
        labels = lambda: [view.items[k].label for k in view.shown_keys()]  # noqa: E731
        assert labels() == ["stop alpha", "start bravo", "start alpha"]  # newest first
        await h.pilot.press("slash", *"alpha", "enter")
        await h.pilot.pause()
        assert labels() == ["stop alpha", "start alpha"] and "/alpha" in str(view.border_title)
        await h.pilot.press("greater_than_sign")  # the next column: ended, newest first
        await h.pilot.press("greater_than_sign", "greater_than_sign")  # task name, a to z
        await h.pilot.pause()
        assert view.sort_column == "task" and labels() == ["start alpha", "stop alpha"]
