"""The one resource view, driven through Pilot on per-test test-driver hosts: filter, sort, a
cursor that stays on its object, selection, and actions on the selection."""

from __future__ import annotations

from dataclasses import replace

from rich.cells import cell_len
from textual.widgets import Input

from hyperconsole.messages import ActionDone
from hyperconsole.screens.jump import JumpScreen
from hyperconsole.virt.models import DomainState
from hyperconsole.widgets.confirm import ConfirmDialog
from hyperconsole.widgets.resource_view import ResourceView
from scripts.scenes import demo_app, settle
from tests.fixtures import domain_xml
from tests.ui.conftest import wait_until
from tests.ui.test_storage_pane import fill, host as storage_host, open_pane as open_storage, select_volume


def names(h) -> list[str]:
    domains = h.app.view.domains
    return [domains[key].name for key in h.app.screen.view.shown_keys()]


def cursor_name(h) -> str:
    return h.app.view.domains[h.app.screen.view.cursor_key].name


def title(h) -> str:
    return str(h.app.screen.view.border_title)


async def test_filter_narrows_and_esc_brings_every_row_back(make_app):
    async with make_app() as h:
        total = len(h.app.view.domains)
        assert len(names(h)) == total == 8
        await h.pilot.press("slash", *"a")
        narrowed = names(h)
        assert narrowed and len(narrowed) < total and all("a" in n.casefold() for n in narrowed)
        assert f"[{len(narrowed)}/{total}] /a" in title(h)
        await h.pilot.press(*"lpha")
        assert names(h) == ["alpha"]
        await h.pilot.press("escape")
        await h.pilot.pause()
        assert len(names(h)) == total
        assert "/" not in title(h) and h.app.screen.view.query_one(Input).has_class("hidden")
        # A tick while filtered must not resurrect hidden rows nor lose them after esc.
        await h.pilot.press("slash", *"charlie", "enter")
        h.app.poll_domains()
        await h.settle()
        assert names(h) == ["charlie"]
        await h.pilot.press("escape")
        assert len(names(h)) == total


async def test_sort_by_name_state_memory_and_cpu(make_app):
    async with make_app() as h:
        view = h.app.screen.view
        assert names(h) == sorted(names(h), key=str.casefold)
        # The test driver reports no CPU figures: give the rows some, as the sampler would.
        figures = {"alpha": 50.0, "bravo": 5.0, "charlie": 75.0}
        domains = {u: replace(d, cpu_percent=figures.get(d.name)) for u, d in h.app.view.domains.items()}
        h.app.view.domains = domains
        view.set_items(domains)
        await h.pilot.press("greater_than_sign")  # state
        assert view.sort_column == "state"
        states = [h.domain(n).state.label for n in names(h)]
        assert states == sorted(states)
        await h.pilot.press("greater_than_sign", "greater_than_sign")  # vCPUs, then memory (high first)
        assert view.sort_column == "memory" and view.sort_reverse
        memory = [h.domain(n).memory_kib for n in names(h)]
        assert memory == sorted(memory, reverse=True) and names(h)[0] == "alpha"
        await h.pilot.press("greater_than_sign")  # CPU %, busiest first
        assert view.sort_column == "cpu"
        assert names(h)[:3] == ["charlie", "alpha", "bravo"]
        assert "CPU % ▼" in view.table.columns["cpu"].label.plain
        await h.pilot.press("equals_sign")
        assert names(h)[-3:] == ["bravo", "alpha", "charlie"]
        # A tick that changes the sorted figure re-orders; the cursor stays on its VM.
        await h.cursor_to("bravo")
        uuid = h.domain("bravo").uuid
        domains = {**domains, uuid: replace(domains[uuid], cpu_percent=99.0)}
        view.set_items(domains, {uuid})
        assert names(h)[-1] == "bravo" and cursor_name(h) == "bravo"


async def test_cursor_stays_on_its_vm_when_rows_come_and_go_above_it(make_app):
    async with make_app() as h:
        await h.cursor_to("delta")
        conn = h.app.manager.conn
        conn.defineXML(domain_xml("aardvark", "shutoff"))
        conn.defineXML(domain_xml("abacus", "shutoff"))
        await wait_until(h.pilot, lambda: "abacus" in names(h), 10)
        assert cursor_name(h) == "delta"
        bravo = conn.lookupByName("bravo")
        bravo.destroy()
        bravo.undefine()
        await wait_until(h.pilot, lambda: "bravo" not in names(h), 10)
        assert cursor_name(h) == "delta"


async def test_cursor_returns_to_its_vm_after_a_filter_hides_and_shows_it(make_app):
    async with make_app() as h:
        await h.cursor_to("delta")
        await h.pilot.press("slash", *"cha")
        assert names(h) == ["charlie"] and cursor_name(h) == "charlie"
        await h.pilot.press("escape")
        assert cursor_name(h) == "delta"
        # …but once the operator moved, the cursor stays where they put it.
        await h.pilot.press("slash", *"cha", "enter", "escape")
        assert cursor_name(h) == "delta"
        await h.pilot.press("slash", *"ha", "enter", "home", "escape")
        assert cursor_name(h) == "alpha"


async def test_when_its_vm_is_deleted_the_cursor_takes_the_next_row_and_names_it(make_app):
    async with make_app() as h:
        order = names(h)
        await h.cursor_to("charlie")
        await h.pilot.press("delete", "y")
        await h.settle()
        assert "charlie" not in names(h)
        following = order[order.index("charlie") + 1]
        assert cursor_name(h) == following
        await h.pilot.press("delete")
        await h.pilot.pause()
        assert h.app.screen.question == f"Delete VM {following}?"
        await h.pilot.press("n")


async def test_space_selects_and_moves_down_ctrl_a_selects_every_shown_row(make_app):
    async with make_app() as h:
        view = h.app.screen.view
        await h.cursor_to("alpha")
        await h.pilot.press("space")
        assert {h.app.view.domains[k].name for k in view.selected} == {"alpha"}
        assert cursor_name(h) == names(h)[names(h).index("alpha") + 1]
        assert "(1 selected)" in title(h)
        await h.pilot.press("space")
        assert "(2 selected)" in title(h)
        await h.pilot.press("escape")
        assert not view.selected and "selected" not in title(h)
        await h.pilot.press("slash", *"a", "enter", "ctrl+a")
        shown = names(h)
        assert {h.app.view.domains[k].name for k in view.selected} == set(shown) and len(shown) < 8
        assert f"({len(shown)} selected)" in title(h)
        await h.pilot.press("ctrl+a")
        assert not view.selected


async def test_delete_acts_on_the_selection_and_names_every_vm(make_app):
    async with make_app() as h:
        await h.cursor_to("charlie")
        await h.pilot.press("space")
        await h.cursor_to("${evil}")
        await h.pilot.press("space")
        await h.cursor_to("bravo")  # the cursor elsewhere: the selection still decides
        await h.pilot.press("delete")
        await h.pilot.pause()
        dialog = h.app.screen
        assert isinstance(dialog, ConfirmDialog)
        assert dialog.question == "Delete 2 VMs: ${evil}, charlie?"
        await h.pilot.press("y")
        await h.settle()
        left = {d.name for d in h.app.view.domains.values()}
        assert "charlie" not in left and "${evil}" not in left and "bravo" in left
        assert sorted(m.label for m in h.of_type(ActionDone)) == ["delete ${evil}", "delete charlie"]


async def test_force_off_names_the_selection(make_app):
    async with make_app() as h:
        await h.cursor_to("alpha")
        await h.pilot.press("space")
        await h.cursor_to("bravo")
        await h.pilot.press("space")
        await h.pilot.press("X")
        await h.pilot.pause()
        assert h.app.screen.question == "Force off 2 VMs: alpha, bravo?"
        await h.pilot.press("y")
        await h.settle()
        assert h.domain("alpha").state is DomainState.SHUTOFF and h.domain("bravo").state is DomainState.SHUTOFF


async def test_volume_cursor_stays_on_its_volume_after_an_operation(make_app):
    async with make_app(storage_host()) as h:
        screen = await open_storage(h)
        await select_volume(h, screen, "vol-0001.qcow2")
        await h.pilot.press("C")
        await h.pilot.pause()
        await fill(h, {"name": "a-copy.qcow2"})  # sorts above the cursor
        await wait_until(h.pilot, lambda: "a-copy.qcow2" in screen.volumes_view.shown_keys(), 10)
        assert screen.volumes_view.cursor_key == "vol-0001.qcow2"


async def test_colon_goes_to_a_pane_by_name_and_the_title_says_where(make_app):
    async with make_app() as h:
        assert h.app.screen.title == "VMs" and h.app.manager.uri.rsplit("/", 1)[1] in h.app.screen.sub_title
        await h.pilot.press("colon")
        await h.pilot.pause()
        assert isinstance(h.app.screen, JumpScreen)
        await h.pilot.press(*"sto", "tab", "enter")
        await h.settle()
        assert h.app.current_mode == "storage" and h.app.screen.title == "Storage"


async def test_keys_of_a_table_are_listed_only_while_it_has_focus(make_app):
    async with make_app(storage_host()) as h:
        screen = await open_storage(h)
        ids = lambda: {b.binding.id for b in screen.active_bindings.values()}  # noqa: E731
        assert "pools.start" in ids() and "volumes.grow" not in ids()
        await h.pilot.press("tab")
        assert "volumes.grow" in ids() and "pools.start" not in ids()


def _fits(view) -> list[str]:
    """Cells cut short: their text is wider than their column."""
    table = view.table
    cut = []
    for column in table.columns.values():
        for row in range(table.row_count):
            text = table.get_cell_at((row, table.get_column_index(column.key)))
            if cell_len(text.plain) > column.width:
                cut.append(f"{column.key}: {text.plain}")
    return cut


async def test_columns_fit_the_terminal():
    app = demo_app()
    async with app.run_test(size=(120, 30)) as pilot:
        await settle(pilot)
        view = app.screen.view
        assert [c.key for c in view._shown_columns] == [c.key for c in view.columns]
        assert _fits(view) == []
        await pilot.resize_terminal(80, 24)
        await settle(pilot)
        shown = [c.key for c in view._shown_columns]
        assert {"name", "state", "cpu", "memory"} <= set(shown) and len(shown) < len(view.columns)
        assert _fits(view) == [] and view.cursor_key is not None
        for pane, table in (("3", "#nets"), ("4", "#pools")):
            await pilot.press(pane)
            for _ in range(3):
                await settle(pilot)
            other = app.screen.query_one(table, ResourceView)
            assert {"name", "state"} <= {c.key for c in other._shown_columns}
            assert sum(c.width + 2 for c in other._shown_columns) <= 80


async def test_question_mark_in_a_dialog_lists_the_dialog_keys_only(make_app):
    from hyperconsole.screens.help import HelpScreen

    async with make_app() as h:
        await h.cursor_to("charlie")
        await h.pilot.press("delete")
        await h.pilot.pause()
        dialog = h.app.screen
        assert isinstance(dialog, ConfirmDialog)
        await h.pilot.press("question_mark")
        await h.pilot.pause()
        assert isinstance(h.app.screen, HelpScreen)
        ids = {row.id for row in h.app.screen.rows}
        assert {"confirm.yes", "confirm.no", "confirm.option"} <= ids and not any(i.startswith("vms.") for i in ids)
        await h.pilot.press("question_mark")
        assert h.app.screen is dialog
        await h.pilot.press("n")
        await h.pilot.press("slash", "question_mark")  # typed into the filter, not help
        assert h.app.screen.view.filter_text == "?"


async def test_a_kind_that_cannot_be_listed_says_so_in_one_line_and_the_other_table_goes_on(make_app, monkeypatch):
    from hyperconsole.errors import HyperconsoleError
    from hyperconsole.host import interfaces
    from hyperconsole.screens.networks import NetworksScreen

    def unreadable(netns=None):
        raise HyperconsoleError("cannot read the host's interfaces: netlink refused")

    monkeypatch.setattr(interfaces, "read_interfaces", unreadable)
    async with make_app() as h:
        await h.pilot.press("3")
        await wait_until(h.pilot, lambda: "default" in h.app.screen.query_one("#nets", ResourceView).items, 10)
        screen = h.app.screen
        assert isinstance(screen, NetworksScreen)
        ifaces, nets = screen.query_one("#ifaces", ResourceView), screen.query_one("#nets", ResourceView)
        # One line, in the title of the table that failed: no dialog, no toast.
        assert ifaces.note == "not listed: cannot read the host's interfaces: netlink refused"
        assert str(ifaces.border_title).endswith("· not listed: cannot read the host's interfaces: netlink refused")
        assert not list(h.app._notifications) and h.app.screen is screen
        # The libvirt networks still list, and still follow an operation on them.
        assert not nets.items["default"].autostart and not nets.note
        nets.focus()
        nets.move_to("default")
        await h.pilot.press("a")
        await wait_until(h.pilot, lambda: nets.items["default"].autostart, 10)
        assert ifaces.note.startswith("not listed:") and not ifaces.items
