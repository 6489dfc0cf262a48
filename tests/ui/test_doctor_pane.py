"""Pane 7 (Doctor) with Pilot: `7` and `:doctor` open it, the checks run in a worker (the pane
answers keys meanwhile), enter shows a row's detail, `r` re-runs, `f` asks (naming what it
touches) and fixes through the networks pane's own call, `--readonly` removes `f`, `?` lists the
pane's keys. The libvirt checks run on the app's own test-driver connection."""

from __future__ import annotations

import threading

from hyperconsole import doctor, resources
from hyperconsole.config import Config
from hyperconsole.doctor.model import Check, ok
from hyperconsole.messages import ActionDone
from hyperconsole.screens.doctor import DoctorScreen
from hyperconsole.virt import networks
from hyperconsole.widgets.confirm import ConfirmDialog
from tests.fixtures import build_host_xml, domain_xml, network_xml, pool_xml
from tests.ui.conftest import screen_text, text_of, wait_until

HOST = build_host_xml(domains=[domain_xml("web", "shutoff", nics=["default"])],
                      networks=[network_xml("default", ip="192.168.122.1")],
                      pools=[pool_xml("default", "/var/lib/libvirt/images")])
LIBVIRT_CHECKS = tuple(doctor.select(doctor.CHECKS, ["libvirt", "access"]))


def _config(tmp_path) -> Config:
    return Config(refresh=30.0, nixos_dir=str(tmp_path / "nixos"))


async def open_doctor(h, checks=LIBVIRT_CHECKS) -> DoctorScreen:
    h.app.doctor_checks = checks
    await h.pilot.press("7")
    screen = h.app.screen
    assert isinstance(screen, DoctorScreen)
    await wait_until(h.pilot, lambda: len(screen.view.items) == len(checks), 20)
    return screen


async def test_pane_lists_every_check_with_counts(make_app, tmp_path):
    async with make_app(HOST, config=_config(tmp_path)) as h:
        networks.stop_network(h.app.manager, "default")
        screen = await open_doctor(h)
        assert list(screen.view.items) == [c.id for c in LIBVIRT_CHECKS]
        assert screen.view.items["libvirt.default-network"].why.startswith("network default is not active")
        assert "1 fail" in screen.view.note
        text = screen_text(h.app)
        assert "Doctor" in text and "libvirt.default-network" in text and "FAIL" in text


async def test_enter_shows_the_detail_and_r_reruns(make_app, tmp_path):
    async with make_app(HOST, config=_config(tmp_path)) as h:
        screen = await open_doctor(h)
        screen.view.move_to("libvirt.pool-space")
        await h.pilot.pause()
        detail = screen.query_one("#check-detail")
        assert "every pool has 15 % or more free" in text_of(detail)
        assert "enter shows the details" in text_of(detail)
        await h.pilot.press("enter")
        await h.pilot.pause()
        assert screen.expanded and "default: " in text_of(detail) and "enter shows" not in text_of(detail)
        await h.pilot.press("enter")
        await h.pilot.pause()
        assert not screen.expanded
        networks.stop_network(h.app.manager, "default")  # changed behind the pane's back
        await h.pilot.press("r")
        await wait_until(h.pilot, lambda: screen.view.items["libvirt.default-network"].status.value == "fail", 20)
        assert screen.view.cursor_key == "libvirt.pool-space"  # the cursor stays on its row


async def test_f_asks_naming_what_it_touches_then_fixes(make_app, tmp_path):
    async with make_app(HOST, config=_config(tmp_path)) as h:
        networks.stop_network(h.app.manager, "default")
        screen = await open_doctor(h)
        screen.view.move_to("libvirt.pools")  # nothing to fix there: f does nothing
        await h.pilot.pause()
        assert not screen.available("checks.fix")
        await h.pilot.press("f")
        await h.pilot.pause()
        assert not isinstance(h.app.screen, ConfirmDialog)
        screen.view.move_to("libvirt.default-network")
        await h.pilot.pause()
        assert screen.available("checks.fix")
        await h.pilot.press("f")
        await h.pilot.pause()
        dialog = h.app.screen
        assert isinstance(dialog, ConfirmDialog)
        assert dialog.question == "Fix check libvirt.default-network?"
        assert "touches libvirt network default" in dialog.detail
        await h.pilot.press("n")  # no: nothing changes
        await h.pilot.pause()
        assert not h.app.manager.conn.networkLookupByName("default").isActive()
        await h.pilot.press("f")
        await h.pilot.pause()
        await h.pilot.press("y")
        await wait_until(h.pilot, lambda: screen.view.items["libvirt.default-network"].status.value == "pass", 20)
        assert h.app.manager.conn.networkLookupByName("default").isActive()
        done = h.of_type(ActionDone)
        assert [(m.label, m.error) for m in done] == [("start network default", None)]
        assert any(t.label == "start network default" for t in h.app.tasks.tasks)  # in the task log


async def test_readonly_has_no_fix(make_app, tmp_path):
    async with make_app(HOST, config=_config(tmp_path), readonly=True) as h:
        screen = await open_doctor(h)
        screen.view.move_to("libvirt.default-network")
        await h.pilot.press("f")
        await h.pilot.pause()
        assert not isinstance(h.app.screen, ConfirmDialog)
        assert not screen.check_action("act", ("checks.fix",))
        assert h.of_type(ActionDone) == []


async def test_readonly_even_with_a_problem_to_fix(make_app, tmp_path):
    async with make_app(HOST, config=_config(tmp_path)) as h:
        networks.stop_network(h.app.manager, "default")
        h.app.view.readonly = True  # --readonly over a read-write connection
        screen = await open_doctor(h)
        screen.view.move_to("libvirt.default-network")
        await h.pilot.pause()
        assert screen.view.items["libvirt.default-network"].fix is not None
        await h.pilot.press("f")
        await h.pilot.pause()
        assert not isinstance(h.app.screen, ConfirmDialog)
        assert not h.app.manager.conn.networkLookupByName("default").isActive()


async def test_the_pane_answers_keys_while_a_check_hangs(make_app, tmp_path):
    release = threading.Event()
    slow = Check("test.slow", "waits", lambda ctx: release.wait(30) and ok("done"), timeout=30)
    async with make_app(HOST, config=_config(tmp_path)) as h:
        h.app.doctor_checks = (slow,)
        await h.pilot.press("7")
        screen = h.app.screen
        await h.pilot.pause()
        assert screen.view.note == "running 1 checks…"
        await h.pilot.press("2")  # the UI is not blocked
        await h.pilot.pause()
        assert h.app.current_mode == "vms"
        await h.pilot.press("7")
        release.set()
        await wait_until(h.pilot, lambda: "test.slow" in screen.view.items, 10)


async def test_jump_and_help(make_app, tmp_path):
    async with make_app(HOST, config=_config(tmp_path)) as h:
        h.app.doctor_checks = LIBVIRT_CHECKS
        await h.pilot.press("colon")
        await h.pilot.pause()
        for key in "doctor":
            await h.pilot.press(key)
        await h.pilot.press("enter")
        await h.pilot.pause()
        assert isinstance(h.app.screen, DoctorScreen)
        await wait_until(h.pilot, lambda: len(h.app.screen.view.items) == len(LIBVIRT_CHECKS), 20)
        await h.pilot.press("question_mark")
        await h.pilot.pause()
        help_text = screen_text(h.app)
        for action in resources.CHECKS.actions:
            if action.id != "checks.fix":  # no fix under the cursor (first row)
                assert action.description in help_text, action
