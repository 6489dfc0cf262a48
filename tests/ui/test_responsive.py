"""The UI thread never waits on libvirt: with libvirt calls blocked, keys still act; a poll that
fails, whatever the error, keeps polling and says so."""

from __future__ import annotations

import re
import threading

from textual.widgets import Input, Sparkline, Static

from hyperconsole.config import Config
from hyperconsole.host.metrics import HostSampler
from hyperconsole.messages import HostSampled
from hyperconsole.screens.help import HelpScreen
from hyperconsole.virt import lifecycle
from hyperconsole.virt.models import DomainState
from hyperconsole.virt.sampler import DomainSampler
from hyperconsole.widgets.statusbar import StatusBar
from tests.ui.conftest import text_of, wait_until


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
            assert h.app.screen.view.query_one(Input).value == "char"
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


def _status(app) -> str:
    return app.screen.query_one(StatusBar).message


async def test_polls_survive_an_unexpected_error_and_say_so(make_app, monkeypatch):
    """A ValueError in the VM sampler and the host sampler: both polls keep ticking, the status
    bar names the failure, and once the error stops the VM table and the dashboard update again."""
    broken = threading.Event()
    broken.set()
    failures = {"domains": 0, "host": 0}
    real_tick, real_sample = DomainSampler.tick, HostSampler.sample

    def failing_tick(self):
        if broken.is_set():
            failures["domains"] += 1
            raise ValueError("bad stats")
        return real_tick(self)

    def failing_sample(self):
        if broken.is_set():
            failures["host"] += 1
            raise ValueError("bad host sample")
        return real_sample(self)

    async with make_app(config=Config(refresh=0.3)) as h:
        monkeypatch.setattr(DomainSampler, "tick", failing_tick)
        monkeypatch.setattr(HostSampler, "sample", failing_sample)
        # Failing ticks are followed by more ticks, and the failure is in the status bar.
        await wait_until(h.pilot, lambda: min(failures.values()) >= 2, 20)
        await wait_until(h.pilot, lambda: "domain poll: ValueError: bad stats" in _status(h.app)
                         and "host poll: ValueError: bad host sample" in _status(h.app), 20)
        broken.clear()
        h.app.manager.conn.lookupByName("charlie").create()
        row = h.domain("charlie").uuid
        await wait_until(h.pilot, lambda: h.app.screen.view.table.get_cell(row, "state").plain == "running", 20)
        await wait_until(h.pilot, lambda: "ValueError" not in _status(h.app), 20)
        await h.pilot.press("1")
        sampled = len(h.of_type(HostSampled))
        await wait_until(h.pilot, lambda: len(h.of_type(HostSampled)) > sampled, 20)
        dashboard = h.app.screen
        assert dashboard.query_one("#s-cpu", Sparkline).data == list(h.app.view.cpu_history)
        assert text_of(dashboard.query_one("#vm-counts", Static)).split()[:2] == ["running", "2"]


async def test_lifecycle_events_still_poll_after_a_failed_tick(make_app, monkeypatch, caplog):
    real_tick = DomainSampler.tick
    failed = []

    def failing_once(self):
        if not failed:
            failed.append(True)
            raise ValueError("bad stats")
        return real_tick(self)

    async with make_app() as h:  # refresh 30 s: only the event can bring the next tick
        monkeypatch.setattr(DomainSampler, "tick", failing_once)
        h.app.poll_domains()
        await h.settle()
        assert failed and "domain poll: ValueError: bad stats" in _status(h.app)
        assert [r.getMessage() for r in caplog.records if "poll failed" in r.getMessage()] == [
            "domain poll failed: ValueError: bad stats"]
        h.app.manager.conn.lookupByName("charlie").create()
        await wait_until(h.pilot, lambda: h.domain("charlie").state is DomainState.RUNNING, 20)
        assert "ValueError" not in _status(h.app)


async def test_the_status_bar_says_when_vm_figures_are_simulated(make_app):
    from hyperconsole.demo.stats import SimulatedStats

    async with make_app(sampler=lambda manager: DomainSampler(manager, stats_source=SimulatedStats())) as h:
        assert "VM figures simulated" in h.app.screen.query_one(StatusBar).render().plain
    async with make_app() as h:
        assert "simulated" not in h.app.screen.query_one(StatusBar).render().plain


async def test_a_hung_stats_call_is_named_and_the_row_marked_stale(make_app, monkeypatch):
    import libvirt

    release = threading.Event()
    real_list = libvirt.virConnect.domainListGetStats

    def hanging_list(self, doms, *args):
        if any(d.name() == "alpha" for d in doms):
            release.wait(30)
        return real_list(self, doms, *args)

    async with make_app(sampler=lambda m: DomainSampler(m, deadline=1.0, call_deadline=0.5)) as h:
        monkeypatch.setattr(libvirt.virConnect, "getAllDomainStats", lambda self, *a: release.wait(30))
        monkeypatch.setattr(libvirt.virConnect, "domainListGetStats", hanging_list)
        try:
            h.app.poll_domains()
            # The call over every domain, or over the rows on screen once the view has said which.
            await wait_until(h.pilot, lambda: re.search(r"(getAllDomainStats|domainListGetStats) stuck for",
                                                        _status(h.app)), 20)
            assert "(+1 more)" in _status(h.app)  # alpha's own call
            cell = h.app.screen.view.table.get_cell(h.domain("alpha").uuid, "state").plain
            assert cell.startswith("running, ") and cell.endswith("s old")
            assert h.app.screen.view.table.get_cell(h.domain("bravo").uuid, "state").plain == "paused"
        finally:
            release.set()
