"""Re-applying the profile the host has is a no-op whichever way it was written: the fragment's
header does not say which screen or command wrote it, so the pane and `profile apply` agree."""

from __future__ import annotations

import shutil

import pytest

from hyperconsole import cli, profiles
from hyperconsole.nixos.revert import controller_for
from hyperconsole.widgets.confirm import ConfirmDialog
from scripts.scenes import demo_app, settle
from tests.conftest import in_ci
from tests.ui.conftest import text_of, wait_until
from tests.ui.test_security_pane import open_pane

if shutil.which("nix-instantiate") is None:
    if in_ci():
        raise RuntimeError("nix-instantiate is required for the Security pane tests in CI")
    pytest.skip("nix-instantiate not installed", allow_module_level=True)

HEADLESS = profiles.Selection("headless", ())


async def test_cli_reapply_after_the_pane_is_a_no_op(capsys):
    app = demo_app(confirm_timeout=0)
    async with app.run_test(size=(150, 42)) as pilot:
        await open_pane(pilot)
        store = controller_for(app.config, demo=True).store
        await pilot.press("a")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmDialog)
        await pilot.press("y")
        await wait_until(pilot, lambda: profiles.current_selection(store) == HEADLESS, 60)
        await settle(pilot)
    capsys.readouterr()
    code = cli.main(["profile", "apply", "headless", "--demo", "--yes", "--no-rebuild"])
    out, err = capsys.readouterr()
    assert (code, err) == (0, "")
    assert out == "profile headless with these toggles is already written; nothing to change\n"


async def test_pane_after_cli_apply_has_nothing_to_apply(capsys):
    assert cli.main(["profile", "apply", "headless", "--demo", "--yes", "--no-rebuild"]) == 0
    app = demo_app()
    async with app.run_test(size=(150, 42)) as pilot:
        screen = await open_pane(pilot)
        assert profiles.current_selection(screen.controller.store) == HEADLESS
        assert screen.selection() == ("headless", ())
        assert screen.changeset.is_empty
        assert "nothing to apply" in text_of(screen.query_one("#sec-diff"))
