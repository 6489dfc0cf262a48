"""The VM list tells the sampler which rows are on screen: a tick samples those (one call), rows
scrolled into view are sampled at once, and a sort on a rate column samples every domain."""

from __future__ import annotations

import pytest

from hyperconsole.virt.sampler import SLOW_TICKS
from tests.fixtures import build_host_xml, domain_xml

COUNT = 300


@pytest.fixture(scope="module")
def host() -> str:
    return build_host_xml([domain_xml(f"vm-{i:03d}", "running") for i in range(COUNT)], [], [])


def _sampled(libvirt_calls, on_screen: set[str]) -> set[str]:
    """The domains the last tick asked about, besides the slice of the others each tick takes."""
    asked = [args for call, args in libvirt_calls.made if call == "virConnect.domainListGetStats"]
    assert asked and not [c for c, _a in libvirt_calls.made if c == "virConnect.getAllDomainStats"]
    keys = {dom.UUIDString() for dom in asked[-1][0]}
    assert len(keys - on_screen) <= -(-COUNT // SLOW_TICKS)
    return keys & on_screen


async def test_the_rows_on_screen_are_sampled_and_rows_scrolled_into_view_at_once(make_app, host, libvirt_calls):
    async with make_app(host, size=(120, 30)) as h:
        table = h.app.screen.view.table
        await h.pilot.pause(0.4)  # the view tells the screen once it settles
        await h.settle()
        libvirt_calls.clear()
        h.app.poll_domains()
        await h.settle()
        on_screen = set(table.visible_keys())
        assert _sampled(libvirt_calls, on_screen) == on_screen
        assert len(table.visible_keys()) < 40

        libvirt_calls.clear()
        table.scroll_to(y=200, animate=False)
        await h.pilot.pause(0.4)
        await h.settle()  # no refresh due (30 s): the tick comes from the scroll itself
        in_view = set(table.visible_keys())
        assert in_view and in_view <= set(table.keys[200:240])
        assert _sampled(libvirt_calls, in_view) == in_view

        h.app.screen.view.sort_by("cpu", reverse=True)  # sorted on CPU %: every domain, every tick
        await h.pilot.pause(0.4)
        await h.settle()
        libvirt_calls.clear()
        h.app.poll_domains()
        await h.settle()
        assert [c for c, _a in libvirt_calls.made] == ["virConnect.getAllDomainStats"]
