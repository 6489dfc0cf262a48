"""The UI thread never waits on libvirt: with libvirt calls blocked, keys still act."""

from __future__ import annotations

import threading

from textual.widgets import Input

from hyperconsole.screens.help import HelpScreen
from hyperconsole.virt import lifecycle
from hyperconsole.virt.sampler import DomainSampler


async def test_keys_work_while_a_poll_and_an_operation_hang(make_app, monkeypatch):
    release = threading.Event()
    entered = threading.Event()
    real_tick = DomainSampler._tick

    def slow_tick(self, started):
        entered.set()
        release.wait(30)
        return real_tick(self, started)

    def slow_start(manager, uuid):
        release.wait(30)

    async with make_app() as h:
        monkeypatch.setattr(DomainSampler, "_tick", slow_tick)
        monkeypatch.setattr(lifecycle, "start", slow_start)
        try:
            h.app.poll_domains()
            await h.cursor_to("charlie")
            await h.pilot.press("s")  # a start that hangs in its worker
            assert entered.wait(5), "the poll worker never ran"
            # Both libvirt calls are stuck; the UI still answers every key.
            await h.pilot.press("slash", *"char")
            assert h.app.screen.query_one("#filter", Input).value == "char"
            await h.pilot.press("escape", "question_mark")
            assert isinstance(h.app.screen, HelpScreen)
            await h.pilot.press("escape", "1")
            assert h.app.current_mode == "dashboard"
            await h.pilot.press("2")
            assert h.app.current_mode == "vms"
            assert not release.is_set()
        finally:
            release.set()
        await h.settle()


async def test_polls_never_overlap(make_app, monkeypatch):
    active = 0
    most = 0
    lock = threading.Lock()
    real_tick = DomainSampler._tick

    def counting_tick(self, started):
        nonlocal active, most
        with lock:
            active += 1
            most = max(most, active)
        try:
            threading.Event().wait(0.05)
            return real_tick(self, started)
        finally:
            with lock:
                active -= 1

    async with make_app() as h:
        monkeypatch.setattr(DomainSampler, "_tick", counting_tick)
        for _ in range(20):  # a burst of refresh requests (events, operations)
            h.app.poll_domains()
        await h.settle(5)
        assert most == 1
