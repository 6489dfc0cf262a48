"""The Security pane runs the lock-out guard: over SSH, a profile after which the session's user
could not log in shows the refusal above its diff, and `a` says it instead of applying."""

from __future__ import annotations

from hyperconsole.config import Config
from hyperconsole.screens.security import SecurityScreen
from tests.ui.conftest import text_of, wait_until


async def test_headless_over_ssh_is_refused_in_the_pane(make_app, tmp_path, monkeypatch):
    nixos_dir = tmp_path / "nixos"
    nixos_dir.mkdir()
    (nixos_dir / "configuration.nix").write_text("{ ... }: { }\n")
    monkeypatch.setenv("SSH_CONNECTION", "198.51.100.7 52000 192.0.2.10 22")
    monkeypatch.setenv("SUDO_USER", "hc-no-such-user")
    config = Config(refresh=30.0, nixos_dir=str(nixos_dir), rebuild_command="/bin/false")
    async with make_app(config=config, size=(150, 45)) as h:
        await h.pilot.press("6")
        await wait_until(h.pilot, lambda: isinstance(h.app.screen, SecurityScreen)
                         and h.app.screen.changeset is not None, 20)
        screen = h.app.screen
        assert screen.refusal.startswith("refused: you are logged in over SSH as hc-no-such-user")
        assert text_of(screen.query_one("#sec-diff")).startswith("refused: you are logged in over SSH")
        await h.pilot.press("a")
        await h.settle()
        assert h.app.screen is screen  # no confirmation dialog: nothing to apply
        assert not (nixos_dir / "hyperconsole").exists()
