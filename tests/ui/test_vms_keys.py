"""Every key of the VM list, driven through Pilot on a per-test test-driver host."""

from __future__ import annotations

from textual.widgets import Input

from hyperconsole.messages import ActionDone
from hyperconsole.screens.create import CreateVmScreen
from hyperconsole.screens.details import DetailsScreen
from hyperconsole.screens.help import HelpScreen
from hyperconsole.screens.snapshots import SnapshotsScreen
from hyperconsole.screens.vms import VmsScreen
from hyperconsole.virt import lifecycle
from hyperconsole.virt.models import DomainState
from hyperconsole.widgets.confirm import ConfirmDialog
from hyperconsole.widgets.form import Form
from hyperconsole.widgets.resource_view import ResourceTable
from tests.ui.conftest import NAMES, text_of


def names_in_table(app) -> list[str]:
    domains = app.view.domains
    return [domains[key].name for key in app.screen.view.shown_keys()]


async def test_opens_on_vm_list_sorted_by_name_with_names_verbatim(make_app):
    async with make_app() as h:
        assert isinstance(h.app.screen, VmsScreen)
        shown = names_in_table(h.app)
        assert shown == sorted(shown, key=str.casefold)
        for name in NAMES:  # never interpreted as markup
            assert name in shown


async def test_start_shutdown_pause_resume_reboot(make_app):
    async with make_app() as h:
        await h.cursor_to("charlie")
        await h.pilot.press("s")
        await h.settle()
        assert h.domain("charlie").state is DomainState.RUNNING
        await h.pilot.press("p")
        await h.settle()
        assert h.domain("charlie").state is DomainState.PAUSED
        await h.pilot.press("p")
        await h.settle()
        assert h.domain("charlie").state is DomainState.RUNNING
        await h.pilot.press("r")
        await h.settle()
        assert h.domain("charlie").state is DomainState.RUNNING
        assert [m.label for m in h.of_type(ActionDone) if m.error is None][-1] == "reboot charlie"
        await h.pilot.press("x")
        await h.settle()
        assert h.domain("charlie").state is DomainState.SHUTOFF
        assert all(m.error is None for m in h.of_type(ActionDone))


async def test_force_off_asks_and_n_cancels(make_app):
    async with make_app() as h:
        await h.cursor_to("alpha")
        await h.pilot.press("X")
        await h.pilot.pause()
        assert isinstance(h.app.screen, ConfirmDialog)
        await h.pilot.press("n")
        await h.settle()
        assert h.domain("alpha").state is DomainState.RUNNING
        await h.pilot.press("X")
        await h.pilot.pause()
        await h.pilot.press("escape")
        await h.settle()
        assert h.domain("alpha").state is DomainState.RUNNING
        await h.pilot.press("X")
        await h.pilot.pause()
        await h.pilot.press("y")
        await h.settle()
        assert h.domain("alpha").state is DomainState.SHUTOFF


async def test_autostart_toggles(make_app):
    async with make_app() as h:
        await h.cursor_to("charlie")
        assert h.domain("charlie").autostart is False
        await h.pilot.press("a")
        await h.settle()
        assert h.domain("charlie").autostart is True
        await h.pilot.press("a")
        await h.settle()
        assert h.domain("charlie").autostart is False


async def test_space_selects_and_bulk_start(make_app):
    async with make_app() as h:
        await h.cursor_to("charlie")
        await h.pilot.press("space")
        await h.cursor_to("café-ü")
        await h.pilot.press("space")
        assert {h.app.view.domains[u].name for u in h.app.screen.view.selected} == {"charlie", "café-ü"}
        await h.pilot.press("s")
        await h.settle()
        assert h.domain("charlie").state is DomainState.RUNNING
        assert h.domain("café-ü").state is DomainState.RUNNING
        assert h.domain("${evil}").state is DomainState.SHUTOFF
        await h.pilot.press("x")
        await h.settle()
        assert h.domain("charlie").state is DomainState.SHUTOFF
        await h.pilot.press("escape")
        assert not h.app.screen.view.selected


async def test_filter_narrows_live_enter_keeps_esc_clears(make_app):
    async with make_app() as h:
        await h.pilot.press("slash")
        box = h.app.screen.view.query_one(Input)
        assert box.has_focus
        await h.pilot.press(*"cha")
        assert names_in_table(h.app) == ["charlie"]
        await h.pilot.press("enter")
        assert h.app.screen.view.table.has_focus
        assert names_in_table(h.app) == ["charlie"]
        await h.pilot.press("slash", "escape")
        await h.pilot.pause()
        assert len(names_in_table(h.app)) == len(h.app.view.domains)
        assert box.has_class("hidden")
        await h.pilot.press("slash", *"pause")  # state words match too
        assert names_in_table(h.app) == ["bravo"]


async def test_details_show_disks_nics_snapshots(make_app):
    async with make_app() as h:
        await h.cursor_to("alpha")
        await h.pilot.press("enter")
        await h.settle()
        assert isinstance(h.app.screen, DetailsScreen)
        text = text_of(h.app.screen.query_one("#details"))
        for needle in ("alpha.qcow2", "patched", "fresh install"):
            assert needle in text
        await h.pilot.press("escape")
        assert isinstance(h.app.screen, VmsScreen)


async def test_snapshots_create_revert_delete(make_app):
    async with make_app() as h:
        await h.cursor_to("alpha")
        await h.pilot.press("t")
        await h.settle()
        screen = h.app.screen
        assert isinstance(screen, SnapshotsScreen)
        assert [s.name for s in screen.snapshots] == ["base", "patched"]
        await h.pilot.press("n")
        await h.pilot.pause()
        assert isinstance(h.app.screen, Form)
        await h.pilot.press(*"pre-upgrade", "tab", *"before [b]the[/b] upgrade", "enter")
        await h.settle()
        assert "pre-upgrade" in [s.name for s in screen.snapshots]
        created = next(s for s in screen.snapshots if s.name == "pre-upgrade")
        assert created.description == "before [b]the[/b] upgrade"
        table = screen.query_one(ResourceTable)
        table.move_cursor(row=table.get_row_index("base"))
        await h.pilot.press("r")
        await h.pilot.pause()
        assert isinstance(h.app.screen, ConfirmDialog)
        await h.pilot.press("y")
        await h.settle()
        assert next(s for s in screen.snapshots if s.current).name == "base"
        table.move_cursor(row=table.get_row_index("pre-upgrade"))
        await h.pilot.press("delete")
        await h.pilot.press("y")
        await h.settle()
        assert "pre-upgrade" not in [s.name for s in screen.snapshots]
        await h.pilot.press("escape")
        assert isinstance(h.app.screen, VmsScreen)


async def test_delete_asks_and_removes(make_app):
    async with make_app() as h:
        await h.cursor_to("${evil}")
        await h.pilot.press("delete")
        await h.pilot.pause()
        dialog = h.app.screen
        assert isinstance(dialog, ConfirmDialog) and "${evil}" in dialog.question
        await h.pilot.press("n")
        await h.settle()
        assert any(d.name == "${evil}" for d in h.app.view.domains.values())
        await h.pilot.press("delete")
        await h.pilot.pause()
        await h.pilot.press("y")
        await h.settle()
        assert all(d.name != "${evil}" for d in h.app.view.domains.values())
        assert "${evil}" not in names_in_table(h.app)


async def test_clone_copies_a_shut_off_vm(make_app):
    async with make_app() as h:
        await h.cursor_to("charlie")
        await h.pilot.press("C")
        await h.pilot.pause()
        assert isinstance(h.app.screen, Form)
        await h.pilot.press("enter")
        await h.settle()
        assert any(d.name == "charlie-clone" for d in h.app.view.domains.values())
        done = [m for m in h.of_type(ActionDone) if m.label == "clone charlie"]
        assert done and done[-1].error is None and "charlie-clone" in done[-1].detail


async def test_new_vm_form_creates_and_refuses_bad_names(make_app):
    async with make_app() as h:
        await h.pilot.press("n")
        await h.settle()
        screen = h.app.screen
        assert isinstance(screen, CreateVmScreen)
        screen.query_one("#f-name", Input).value = "a/b"
        await h.pilot.press("ctrl+s")
        await h.settle()
        assert isinstance(h.app.screen, CreateVmScreen)
        assert text_of(screen.query_one("#e-name")) == "VM name may not contain '/'"
        assert screen.query_one("#f-name", Input).value == "a/b"
        screen.query_one("#f-name", Input).value = "echo"
        screen.query_one("#f-memory", Input).value = "1024"
        screen.query_one("#f-size", Input).value = "2"
        await h.pilot.press("ctrl+s")
        await h.settle()
        assert isinstance(h.app.screen, VmsScreen), text_of(screen.query_one("#form-error"))
        assert h.domain("echo").memory_kib == 1024 * 1024
        vols = h.app.manager.conn.storagePoolLookupByName("default").listVolumes()
        assert "echo.qcow2" in vols


async def test_console_suspends_and_runs_virsh(make_app, monkeypatch):
    calls = []
    monkeypatch.setattr("hyperconsole.screens.vms.subprocess.call", lambda cmd: calls.append(cmd) or 0)
    async with make_app() as h:
        suspended = []

        class FakeSuspend:
            def __enter__(self):
                suspended.append(True)

            def __exit__(self, *exc):
                return False

        monkeypatch.setattr(h.app, "suspend", lambda: FakeSuspend())
        # The test driver has no serial consoles (the pane says so instead, see test_tasklog.py):
        # the command is built for a driver that has them.
        monkeypatch.setattr(h.app.manager, "uri", "qemu:///system")
        await h.cursor_to("alpha")
        await h.pilot.press("c")
        await h.pilot.pause()
        assert suspended and calls
        assert calls[0][:3] == ["virsh", "-c", "qemu:///system"] and "console" in calls[0]


async def test_help_lists_every_key(make_app):
    async with make_app() as h:
        await h.pilot.press("question_mark")
        await h.pilot.pause()
        assert isinstance(h.app.screen, HelpScreen)
        listed = {row.id for row in h.app.screen.rows}
        for name in ("start", "shutdown", "force_off", "reboot", "pause", "autostart", "console", "new",
                     "edit", "snapshots", "delete", "clone", "save", "details"):
            assert f"vms.{name}" in listed, name
        for binding_id in ("view.select", "view.select_all", "view.filter", "view.sort_next", "app.help",
                           "app.jump"):
            assert binding_id in listed, binding_id
        assert "quit" in {row.action for row in h.app.screen.rows}
        await h.pilot.press("escape")
        assert isinstance(h.app.screen, VmsScreen)


async def test_readonly_hides_mutating_keys_and_shows_badge(make_app):
    async with make_app(readonly=True) as h:
        screen = h.app.screen
        await h.cursor_to("charlie")
        await h.pilot.press("s")
        await h.settle()
        assert h.domain("charlie").state is DomainState.SHUTOFF
        bar = screen.query_one("StatusBar")
        assert "READ-ONLY" in str(bar.render())
        await h.pilot.press("question_mark")
        listed = {row.id for row in h.app.screen.rows}
        assert "vms.start" not in listed and "vms.delete" not in listed and "view.filter" in listed


async def test_number_keys_switch_panes(make_app):
    async with make_app() as h:
        await h.pilot.press("1")
        await h.settle()
        assert h.app.current_mode == "dashboard"
        counts = text_of(h.app.screen.query_one("#vm-counts"))
        assert "running" in counts
        await h.pilot.press("2")
        assert h.app.current_mode == "vms"


async def test_lifecycle_event_from_outside_refreshes_the_row(make_app):
    async with make_app() as h:
        h.app.manager.conn.lookupByName("bravo").resume()
        for _ in range(50):
            await h.settle(1)
            if h.domain("bravo").state is DomainState.RUNNING:
                break
        assert h.domain("bravo").state is DomainState.RUNNING
        row = h.app.screen.view.table.get_row(h.domain("bravo").uuid)
        assert row[2].plain == "running"


async def test_libvirt_error_is_one_line_notification(make_app):
    async with make_app() as h:
        charlie = h.domain("charlie")
        # Past the screen's own state check, straight into libvirt: shutting down a shut-off VM.
        h.app.screen.run_op("shutdown charlie", lifecycle.shutdown, charlie.uuid, charlie.uuid)
        await h.settle()
        errors = [m.error for m in h.of_type(ActionDone) if m.error]
        assert len(errors) == 1, errors
        assert errors[0].startswith("shut down charlie: ") and "not running" in errors[0] and "\n" not in errors[0]


async def test_keymap_from_config_remaps_a_binding(make_app):
    from hyperconsole.config import Config

    async with make_app(config=Config(refresh=30.0, keymap={"vms.start": "g"})) as h:
        await h.cursor_to("charlie")
        await h.pilot.press("g")
        await h.settle()
        assert h.domain("charlie").state is DomainState.RUNNING


async def test_palette_lists_pane_actions_and_runs_them(make_app):
    from textual.command import CommandPalette

    async with make_app() as h:
        await h.cursor_to("charlie")
        await h.pilot.press("ctrl+p")
        await h.pilot.pause()
        assert isinstance(h.app.screen, CommandPalette)
        await h.pilot.press(*"Start (s)")
        await h.pilot.pause(0.5)
        await h.pilot.press("enter")
        await h.settle()
        assert h.domain("charlie").state is DomainState.RUNNING
