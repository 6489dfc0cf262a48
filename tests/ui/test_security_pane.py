"""Security pane on the demo NixOS dir: diff, apply on trial, keep it, or watch it revert by itself.
The demo's rebuild really evaluates the fragments with nix-instantiate."""

from __future__ import annotations

import re
import shutil
import time

import pytest
from textual.widgets import OptionList, SelectionList

from hyperconsole import profiles, tasklog
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


async def apply_on_trial(pilot):
    """Apply the previewed profile on trial; the trial once it waits to be kept."""
    app = pilot.app
    await open_pane(pilot)
    await pilot.press("a", "y")
    await wait_until(pilot, lambda: app.view.pending is not None and app.view.pending.state == "armed", 60)
    return app.view.pending



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
        active = {b.binding.id for b in screen.active_bindings.values()}
        assert not active & {"security.apply", "host.keep", "host.undo"} and "security.reload" in active


async def test_a_new_session_shows_the_waiting_trial_and_can_keep_it():
    first = demo_app(confirm_timeout=120)
    async with first.run_test(size=(150, 42)) as pilot:
        await apply_on_trial(pilot)
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


async def test_an_automatic_revert_is_announced_in_every_pane_and_logged():
    app = demo_app(confirm_timeout=2)
    async with app.run_test(size=(150, 42)) as pilot:
        change = await apply_on_trial(pilot)
        await pilot.press("2")  # the operator is elsewhere when the timer fires
        await wait_until(pilot, lambda: app.view.pending is None, 60)
        await settle(pilot)
        bar = app.screen.query_one("StatusBar")
        assert app.current_mode == "vms"
        assert bar.message.startswith(f"host change {change.description} reverted at ")
        assert bar.message.endswith(": not confirmed in time")
        assert [n.title for n in app._notifications][-1] == "Host change reverted"
        reverted = app.tasks.get(tasklog.revert_task_id(change.change_id))
        assert reverted is not None and reverted.result is tasklog.Result.OK
        assert (reverted.detail, reverted.target) == ("not confirmed in time", "security-profile.nix")
        await pilot.press("3")
        await settle(pilot)
        assert app.screen.query_one("StatusBar").message == bar.message


async def test_the_operators_own_revert_is_one_entry_and_not_announced():
    app = demo_app(confirm_timeout=120)
    async with app.run_test(size=(150, 42)) as pilot:
        change = await apply_on_trial(pilot)
        await pilot.press("u", "y")
        await wait_until(pilot, lambda: app.view.pending is None, 60)
        await settle(pilot)
        assert app.view.notice == ""
        labels = [t.label for t in app.tasks.tasks]
        assert labels == [f"apply {change.description}", f"revert {change.description}"]
        assert app.tasks.get(tasklog.revert_task_id(change.change_id)).detail == "reverted"


async def test_quit_during_a_trial_warns_first():
    app = demo_app(confirm_timeout=120)
    async with app.run_test(size=(150, 42)) as pilot:
        await apply_on_trial(pilot)
        await pilot.press("q")
        dialog = app.screen
        assert isinstance(dialog, ConfirmDialog)
        assert re.fullmatch(r"A host change is on trial and reverts by itself in \d+ s unless kept; quit anyway\?",
                            dialog.question)
        await pilot.press("n")
        assert app.return_code is None
        await pilot.press("k")
        await wait_until(pilot, lambda: app.view.pending is None, 60)
        await pilot.press("q")
        assert app.return_code == 0


async def test_the_diff_is_unified_when_narrow_and_side_by_side_when_wide():
    app = demo_app()
    async with app.run_test(size=(90, 30)) as pilot:
        screen = await open_pane(pilot)
        unified, side = screen.query_one("#sec-diff-unified"), screen.query_one("#sec-diff")
        assert unified.display and not side.display
        lines = text_of(unified).splitlines()
        assert lines[0].startswith("--- security-profile.nix now") and any(line.startswith("+") for line in lines[2:])
        await pilot.resize_terminal(150, 42)
        await settle(pilot)
        assert side.display and not unified.display
        await pilot.resize_terminal(99, 42)
        await settle(pilot)
        assert unified.display and not side.display


def test_unified_diff_marks_only_its_header_bold_and_shows_markup_literally():
    from hyperconsole.widgets.sidediff import unified

    text = unified("a\n-- [b]x[/b]\nc\n", "a\nc\nd\n", old_title="f.nix now", new_title="after apply")
    lines = text.plain.splitlines()
    assert lines[:2] == ["--- f.nix now", "+++ after apply"]
    assert "--- [b]x[/b]" in lines and "+d" in lines
    removed = next(span for span in text.spans if text.plain[span.start:span.end].startswith("--- [b]"))
    assert removed.style == "red"


async def test_a_revert_while_no_console_ran_is_in_the_next_sessions_log():
    first = demo_app(confirm_timeout=2)
    async with first.run_test(size=(150, 42)) as pilot:
        change = await apply_on_trial(pilot)
    controller = controller_for(first.config, demo=True)
    for _ in range(600):  # the detached timer reverts after the console is gone
        if controller.pending() is None:
            break
        time.sleep(0.1)
    assert controller.pending() is None
    second = demo_app(confirm_timeout=2)
    async with second.run_test(size=(150, 42)) as pilot:
        await wait_until(pilot, lambda: second.tasks.get(tasklog.revert_task_id(change.change_id)), 10)
        reverted = second.tasks.get(tasklog.revert_task_id(change.change_id))
        assert (reverted.label, reverted.detail) == (f"revert {change.description}", "not confirmed in time")
        assert [t.label for t in second.tasks.tasks] == [f"apply {change.description}", reverted.label]
        assert second.view.notice == ""  # history, not news


async def test_a_failed_trial_rebuild_is_logged_with_its_error_lines(tmp_path):
    from tests.conftest import write_script

    (tmp_path / "bin").mkdir()
    rebuild = write_script(tmp_path / "bin" / "rebuild", """\
        echo "building the system configuration..."
        echo "error: The option 'services.openssh.bogus' does not exist." >&2
        exit 1
        """)
    app = demo_app(confirm_timeout=60, rebuild_command=str(rebuild))
    seen: list = []
    async with app.run_test(size=(150, 42), message_hook=seen.append) as pilot:
        await open_pane(pilot)
        await pilot.press("a", "y")
        await wait_until(pilot, lambda: any(isinstance(m, ActionDone) for m in seen), 60)
        await settle(pilot)
        [done] = [m for m in seen if isinstance(m, ActionDone)]
        task = app.tasks.get(done.task)
        assert task.result is tasklog.Result.FAILED and task.error == done.error
        first, second = task.error.splitlines()[:2]
        assert first.startswith("test rebuild failed (exit 1); log ")
        assert second.startswith("the change was rolled back: the fragment files were restored")
        assert "error: The option 'services.openssh.bogus' does not exist." in task.error.splitlines()
        assert app.view.pending is None
