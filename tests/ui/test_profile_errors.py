"""A broken profile file is one line in the Security pane, never a pane stuck on "reading…"."""

from __future__ import annotations

from scripts.scenes import demo_app, settle
from tests.ui.conftest import text_of, wait_until


async def test_a_self_referencing_anchor_is_one_line_in_the_security_pane(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    user_profiles = tmp_path / "hyperconsole" / "profiles"
    user_profiles.mkdir(parents=True)
    (user_profiles / "loop.yaml").write_text("name: loop\nsummary: s\nnixos: &x\n  services: [*x]\n")
    app = demo_app()
    async with app.run_test(size=(150, 42)) as pilot:
        await settle(pilot)
        await pilot.press("6")
        screen = pilot.app.screen
        await wait_until(pilot, lambda: text_of(screen.query_one("#sec-problems")).strip() != "", 20)
        problems = text_of(screen.query_one("#sec-problems")).strip()
        assert problems == (f"{user_profiles / 'loop.yaml'}: line 4 is not valid YAML: "
                            "the alias *x refers to a node that contains it")
        assert "reading" not in text_of(screen.query_one("#sec-current"))
        assert "headless" in [o.id for o in screen.query_one("#sec-profiles").options]
