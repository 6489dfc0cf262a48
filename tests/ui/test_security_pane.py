"""Security pane on the demo NixOS dir: diff, apply on trial, keep it, or watch it revert by itself.
The demo's rebuild really evaluates the fragments with nix-instantiate."""

from __future__ import annotations

import shutil

import pytest
from textual.widgets import OptionList, SelectionList

from hyperconsole import profiles
from hyperconsole.messages import ActionDone
from hyperconsole.nixos.revert import controller_for
from hyperconsole.screens.security import SecurityScreen
from hyperconsole.widgets.confirm import ConfirmDialog
from scripts.scenes import demo_app, settle
from tests.conftest import in_ci
from tests.ui.conftest import text_of, wait_until

if shutil.which("nix-instantiate") is None:
    if in_ci():
        raise RuntimeError("nix-instantiate is required for the Security pane tests in CI")
    pytest.skip("nix-instantiate not installed", allow_module_level=True)


async def open_pane(pilot):
    await settle(pilot)
    await pilot.press("6")
    for _ in range(20):
        await settle(pilot)
        screen = pilot.app.screen
        if isinstance(screen, SecurityScreen) and screen.changeset is not None:
            return screen
    raise AssertionError("security pane never showed a preview")



async def test_shows_profiles_and_side_by_side_diff():
    app = demo_app()
    async with app.run_test(size=(150, 42)) as pilot:
        screen = await open_pane(pilot)
        names = [o.id for o in screen.query_one("#sec-profiles", OptionList).options]
        assert names == ["headless", "management"]
        assert "no profile written yet" in text_of(screen.query_one("#sec-current"))
        diff = text_of(screen.query_one("#sec-diff"))
        assert "after apply" in diff and "openssh" in diff


async def test_apply_on_trial_then_keep():
    app = demo_app(confirm_timeout=60)
    seen: list = []
    async with app.run_test(size=(150, 42), message_hook=seen.append) as pilot:
        screen = await open_pane(pilot)
        screen.query_one("#sec-toggles", SelectionList).select("strict-ssh")
        await settle(pilot)
        await pilot.press("a")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmDialog)
        await pilot.press("y")
        await wait_until(pilot, lambda: app.view.pending and app.view.pending.state == "armed", 60)
        assert "REVERT IN" in screen.query_one("StatusBar").pending
        assert "Reverts by itself" in text_of(screen.query_one("#pending-banner"))
        assert any("demo" in line.lower() for line in screen.query_one("#rebuild-log").lines)
        await pilot.press("k")
        await wait_until(pilot, lambda: app.view.pending is None, 60)
        store = controller_for(app.config, demo=True).store
        assert profiles.current_selection(store) == profiles.Selection("headless", ("strict-ssh",))
        done = [m for m in seen if isinstance(m, ActionDone)]
        assert [m.error for m in done] == [None, None], [m.error for m in done]


async def test_unconfirmed_trial_reverts_by_itself_and_restores_files():
    app = demo_app(confirm_timeout=2)
    async with app.run_test(size=(150, 42)) as pilot:
        screen = await open_pane(pilot)
        store = controller_for(app.config, demo=True).store
        before = {name: store.read(name).text for name in store.names()}
        await pilot.press("a", "y")
        await wait_until(pilot, lambda: app.view.pending is not None, 60)
        # Nobody confirms: the detached timer runs the revert command by itself.
        await wait_until(pilot, lambda: controller_for(app.config, demo=True).pending() is None, 60)
        after = {name: store.read(name).text for name in store.names()}
        assert after == before
        await wait_until(pilot, lambda: app.view.pending is None, 10)
        assert screen.query_one("StatusBar").pending == ""


async def test_readonly_hides_apply_keep_revert():
    app = demo_app()
    app.view.readonly = True
    async with app.run_test(size=(150, 42)) as pilot:
        screen = await open_pane(pilot)
        await pilot.press("a")
        await pilot.pause()
        assert not isinstance(app.screen, ConfirmDialog)
        for action in ("apply", "keep", "undo"):
            assert screen.check_action(action, ()) is False


async def test_a_new_session_shows_the_waiting_trial_and_can_keep_it():
    first = demo_app(confirm_timeout=120)
    async with first.run_test(size=(150, 42)) as pilot:
        await open_pane(pilot)
        await pilot.press("a", "y")
        await wait_until(pilot, lambda: first.view.pending and first.view.pending.state == "armed", 60)
    # The console exits; the trial stays. A new session opens on the VM list and says so.
    second = demo_app(confirm_timeout=120)
    async with second.run_test(size=(150, 42)) as pilot:
        await settle(pilot)
        assert second.view.pending is not None
        assert "REVERT IN" in second.screen.query_one("StatusBar").pending
        await open_pane(pilot)
        await pilot.press("k")
        await wait_until(pilot, lambda: second.view.pending is None, 60)
        assert second.screen.query_one("StatusBar").pending == ""
