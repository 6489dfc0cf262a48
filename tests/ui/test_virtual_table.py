"""The resource view's virtual table on a 2,000-VM test host: the rows on screen are the right
ones wherever it is scrolled, an update repaints only rows whose displayed text changed, a click
puts the cursor on a row, and the screen is told which rows are on screen."""

from __future__ import annotations

from dataclasses import replace

import pytest

from hyperconsole.widgets.resource_view import ResourceTable, ResourceView
from tests.fixtures import build_host_xml, domain_xml
from tests.ui.conftest import screen_text

COUNT = 2000


@pytest.fixture(scope="module")
def big_host() -> str:
    states = ["running", "paused", "shutoff"]
    return build_host_xml([domain_xml(f"vm-{i:04d}", states[i % 3]) for i in range(COUNT)], [], [])


def names_on_screen(h) -> list[str]:
    domains = h.app.view.domains
    return [domains[key].name for key in h.app.screen.view.table.visible_keys()]


def screen_names(h) -> list[str]:
    """VM names as the terminal shows them, top to bottom."""
    return [word for line in screen_text(h.app).splitlines() for word in line.split() if word.startswith("vm-")]


async def test_scrolling_2000_rows_paints_the_rows_in_view(make_app, big_host):
    async with make_app(big_host, size=(120, 30)) as h:
        view = h.app.screen.view
        table = view.table
        assert table.row_count == COUNT and len(view.items) == COUNT
        page = table.page_height
        assert 10 < page < 30
        assert names_on_screen(h) == [f"vm-{i:04d}" for i in range(page)] == screen_names(h)
        await h.pilot.press("end")
        assert view.cursor_key == table.keys[-1] and names_on_screen(h)[-1] == "vm-1999"
        await h.pilot.pause()
        assert screen_names(h) == [f"vm-{i:04d}" for i in range(COUNT - page, COUNT)]
        table.scroll_to(y=1000, animate=False)
        await h.pilot.pause()
        assert screen_names(h) == [f"vm-{i:04d}" for i in range(1000, 1000 + page)]
        # A page down from the top moves a screenful less one row, and the rows follow the cursor.
        await h.pilot.press("home", "pagedown", "pagedown")
        await h.pilot.pause()
        assert table.cursor_row == 2 * (page - 1)
        assert h.app.view.domains[view.cursor_key].name in screen_names(h)


async def test_an_update_repaints_only_rows_whose_text_changed(make_app, big_host):
    async with make_app(big_host, size=(120, 30)) as h:
        view = h.app.screen.view
        table = view.table
        domains = dict(h.app.view.domains)
        on_screen, off_screen = table.keys[3], table.keys[500]

        async def repainted(changes: dict) -> int:
            for key, change in changes.items():
                domains[key] = replace(domains[key], **change)
            before = table.rows_rendered
            view.set_items(domains, set(changes))
            await h.pilot.pause()
            return table.rows_rendered - before

        assert await repainted({off_screen: {"cpu_percent": 40.0}}) == 0
        assert await repainted({on_screen: {"cpu_percent": 40.0}}) == 1
        assert await repainted({on_screen: {"cpu_percent": 40.01}}) == 0  # still shows " 40.0%"
        assert await repainted({on_screen: {"cpu_percent": 12.5}, off_screen: {"cpu_percent": 1.0}}) == 1
        assert "12.5%" in screen_text(h.app)
        # A tick in which nothing changed repaints nothing; moving the cursor repaints two rows.
        before = table.rows_rendered
        h.app.poll_domains()
        await h.settle()
        assert table.rows_rendered == before
        await h.pilot.press("down")
        await h.pilot.pause()
        assert table.rows_rendered - before == 2
        # A row that leaves the screen (renamed past the end of the sort) is replaced: the lines
        # below it move up, nothing above it is repainted.
        before = table.rows_rendered
        assert await repainted({table.keys[10]: {"name": "zz-last"}}) == table.page_height - 10


async def test_a_click_puts_the_cursor_on_the_row(make_app, big_host):
    async with make_app(big_host, size=(120, 30)) as h:
        view = h.app.screen.view
        await h.pilot.click(ResourceTable, offset=(10, 4))  # the header is line 0
        await h.pilot.pause()
        assert view.table.cursor_row == 3 and view.cursor_key == view.table.keys[3]
        highlighted = h.of_type(ResourceView.Highlighted)
        assert highlighted[-1].key == view.cursor_key


async def test_the_screen_is_told_which_rows_are_on_screen(make_app, big_host):
    async with make_app(big_host, size=(120, 30)) as h:
        view = h.app.screen.view
        table = view.table

        async def told() -> list[ResourceView.ViewportChanged]:
            await h.pilot.pause(0.4)  # past the settle delay
            posted = {id(m): m for m in h.of_type(ResourceView.ViewportChanged) if m.view is view}
            return list(posted.values())  # the hook sees a message at every node it bubbles to

        first = await told()
        assert len(first) == 1
        assert first[0].keys == tuple(table.keys[:table.page_height]) and first[0].sort_column == "name"
        # Scrolled: the rows now on screen, in display order.
        table.scroll_to(y=700, animate=False)
        await h.pilot.pause()
        now = await told()
        assert len(now) == 2 and now[-1].keys == tuple(table.keys[700:700 + table.page_height])
        # A change off screen, a tick, a cursor move on screen: the same rows, nothing posted.
        domains = {**h.app.view.domains}
        key = table.keys[5]
        domains[key] = replace(domains[key], cpu_percent=3.0)
        view.set_items(domains, {key})
        h.app.poll_domains()
        await h.settle()
        view.move_to(table.keys[705])
        await h.pilot.press("down")
        assert len(await told()) == 2 and table.cursor_row == 706
        # Filtered: the rows that match (the filter box takes a line from the table meanwhile).
        await h.pilot.press("slash", *"vm-19", "enter")
        now = await told()
        assert {h.app.view.domains[k].name for k in now[-1].keys} <= {f"vm-{i}" for i in range(1900, 2000)}
        assert len(now) > 2 and len(now[-1].keys) == table.page_height
        # Sorted on another column: said even where the same rows stay on screen.
        await h.pilot.press("escape")
        await told()
        count = len(await told())
        await h.pilot.press("greater_than_sign")
        now = await told()
        assert len(now) == count + 1 and now[-1].sort_column == "state"
        assert now[-1].keys == tuple(table.visible_keys())
        # Resized: more rows fit.
        await h.pilot.resize_terminal(120, 40)
        now = await told()
        assert now[-1].keys == tuple(table.visible_keys()) and len(now[-1].keys) > len(now[-2].keys)
