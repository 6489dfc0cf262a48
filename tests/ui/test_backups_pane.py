"""Backups pane (`5`) on the demo host with its real restic repository: every key of the pane."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from hyperconsole.backup import jobs as jobs_mod
from hyperconsole.demo import backup as demo_backup
from hyperconsole.messages import ActionDone
from hyperconsole.nixos.store import FragmentStore
from hyperconsole.screens.backups import BackupsScreen
from hyperconsole.widgets.confirm import ConfirmDialog
from hyperconsole.widgets.form import Form
from scripts.scenes import demo_app, settle
from tests.backup_local import restic_env_ok
from tests.conftest import in_ci
from tests.ui.conftest import fill_form, text_of, wait_until


@pytest.fixture
def app():
    if not restic_env_ok():
        if in_ci():
            pytest.fail("restic is not installed, and CI must run the backup tests")
        pytest.skip("restic is not installed")
    app = demo_app()
    demo_backup.ensure(app.config.nixos_dir, app.manager.conn)
    return app


def done(posted, prefix: str) -> list[ActionDone]:
    return [m for m in posted if isinstance(m, ActionDone) and m.label.startswith(prefix)]


async def open_pane(pilot) -> BackupsScreen:
    await pilot.press("5")
    await wait_until(pilot, lambda: isinstance(pilot.app.screen, BackupsScreen)
                     and len(pilot.app.screen.query_one("#bsnaps").items) >= 9, 60)
    return pilot.app.screen


async def test_jobs_snapshots_figures_run_verify_prune_and_restore_test(app):
    posted: list = []
    async with app.run_test(size=(150, 45), message_hook=posted.append) as pilot:
        screen = await open_pane(pilot)
        assert "test driver has no backup API" in text_of(screen.query_one("#backup-note"))
        row = screen.jobs_view.table.get_row("demo-nightly")
        assert "ok" in " ".join(c.plain for c in row)
        assert "dedup ratio" in text_of(screen.query_one("#backup-figures"))
        await pilot.press("r")
        await wait_until(pilot, lambda: done(posted, "back up"), 120)
        assert done(posted, "back up")[0].error is None
        await wait_until(pilot, lambda: len(screen.query_one("#bsnaps").items) == 12, 60)
        await pilot.press("v")
        await wait_until(pilot, lambda: done(posted, "verify"), 120)
        assert "no errors" in done(posted, "verify")[0].detail
        await pilot.press("P")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmDialog), 60)
        assert "keep" in text_of(app.screen.query_one("#detail")) if app.screen.query("#detail") else True
        await pilot.press("y")
        await wait_until(pilot, lambda: done(posted, "prune"), 120)
        assert done(posted, "prune")[0].error is None
        await pilot.press("T")
        await wait_until(pilot, lambda: done(posted, "restore test"), 120)
        assert done(posted, "restore test")[0].error is None
        await wait_until(pilot, lambda: "restore test web-01: passed" in text_of(screen.query_one("#backup-figures")), 60)


async def test_restore_as_new_and_in_place_refused_while_running(app):
    posted: list = []
    async with app.run_test(size=(150, 45), message_hook=posted.append) as pilot:
        screen = await open_pane(pilot)
        await pilot.press("tab")
        snaps = screen.query_one("#bsnaps")
        key = next(k for k, r in snaps.items.items() if r.vm == "web-01")
        snaps.move_to(key)
        await pilot.pause()
        # the snapshot's detail line: quiesced or not, and the run's notes on it
        assert text_of(screen.query_one("#backup-snapshot")).startswith(f"{key} of web-01: quiesced no")
        await pilot.press("R")
        assert isinstance(app.screen, Form)
        await fill_form(pilot, {"as_name": "web-01-copy"})
        await wait_until(pilot, lambda: done(posted, "restore"), 60)
        assert done(posted, "restore")[0].error is None
        assert app.manager.conn.lookupByName("web-01-copy")
        await pilot.press("I")
        assert isinstance(app.screen, ConfirmDialog)
        await pilot.press("y")
        await wait_until(pilot, lambda: len(done(posted, "restore")) == 2, 60)
        assert "is running" in done(posted, "restore")[1].error


async def test_job_add_edit_remove_go_to_backups_nix(app):
    posted: list = []
    store = FragmentStore(app.config.nixos_dir)
    async with app.run_test(size=(150, 45), message_hook=posted.append) as pilot:
        screen = await open_pane(pilot)
        repo = Path(app.config.nixos_dir).parent / "weekly-repo"
        await pilot.press("n")
        await fill_form(pilot, {"name": "bad name"})
        assert isinstance(app.screen, Form)  # refused inline, nothing written
        await fill_form(pilot, {"name": "weekly", "repository": str(repo), "password_file": str(repo) + ".pw",
                                "vms": "web-*", "schedule": "Sun 03:00", "keep_weekly": "4"})
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmDialog), 60)
        await pilot.press("y")
        await wait_until(pilot, lambda: done(posted, "apply add backup job"), 120)
        assert done(posted, "apply add backup job")[0].error is None
        assert "weekly" in [j.name for j in jobs_mod.read_jobs(store)] and (repo / "config").exists()
        await wait_until(pilot, lambda: "weekly" in screen.jobs_view.items, 60)
        screen.jobs_view.move_to("weekly")
        await pilot.pause()
        await pilot.press("e")
        await fill_form(pilot, {"schedule": "Sat 04:00"})
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmDialog), 60)
        await pilot.press("y")
        await wait_until(pilot, lambda: done(posted, "apply edit backup job"), 120)
        assert jobs_mod.find(jobs_mod.read_jobs(store), "weekly").schedule == "Sat 04:00"
        screen.jobs_view.move_to("weekly")
        await pilot.pause()
        await pilot.press("delete")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmDialog), 60)
        await pilot.press("y")
        await wait_until(pilot, lambda: done(posted, "apply remove backup job"), 120)
        assert [j.name for j in jobs_mod.read_jobs(store)] == ["demo-nightly"]


async def test_ctrl_x_cancels_a_run(app):
    posted: list = []
    slow_open = app.backup_parts["open_vm"]

    def open_vm(conn, name, **kw):
        ctx = slow_open(conn, name, **kw)

        class Slow:
            def __enter__(self):
                src = ctx.__enter__()
                for disk in src.disks:
                    read = disk.read
                    disk.read = lambda o, n, read=read: (time.sleep(0.5), read(o, n))[1]
                return src

            def __exit__(self, *exc):
                return ctx.__exit__(*exc)

        return Slow()

    app.backup_parts["open_vm"] = open_vm
    async with app.run_test(size=(150, 45), message_hook=posted.append) as pilot:
        screen = await open_pane(pilot)
        before = len(screen.query_one("#bsnaps").items)
        await pilot.press("r")
        await pilot.pause(1.0)
        assert "hidden" not in screen.query_one("#backup-progress").classes
        await pilot.press("ctrl+x")
        await wait_until(pilot, lambda: done(posted, "back up"), 120)
        assert "cancelled" in done(posted, "back up")[0].error
        await settle(pilot)
        assert len(screen.query_one("#bsnaps").items) == before
