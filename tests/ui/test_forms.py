"""The one form, driven as an operator types: numbers are shown exactly as typed and refused with
one line, never rewritten (`1.5` vCPUs once became 15); the dialog stays open with the input kept;
a resource change is confirmed before it applies; the same mistake reads the same everywhere."""

from __future__ import annotations

import pytest
from textual.widgets import Select

from hyperconsole.screens.create import CreateVmScreen
from hyperconsole.screens.vms import VmsScreen
from hyperconsole.widgets.confirm import ConfirmDialog
from hyperconsole.widgets.form import Form
from tests.ui.conftest import form_errors, screen_text, text_of


async def type_into(h, key: str, text: str) -> None:
    """Clear a field and type `text` key by key, as the operator does."""
    form = h.app.screen
    field = form.widget(key)
    field.value = ""
    field.focus()
    await h.pilot.press(*text)
    await h.pilot.pause()


@pytest.mark.parametrize("field, typed, error", [
    ("vcpus", "1.5", "vCPUs must be a whole number from 1 to 4096, not '1.5'"),
    ("vcpus", "1e3", "vCPUs must be a whole number from 1 to 4096, not '1e3'"),
    ("vcpus", "2k", "vCPUs must be a whole number from 1 to 4096, not '2k'"),
    ("vcpus", "0", "vCPUs must be from 1 to 4096, not 0"),
    ("memory", "3.5", "memory (MiB) must be a whole number from 64 to 67108864, not '3.5'"),
])
async def test_edit_shows_exactly_what_was_typed_and_refuses_it_in_one_line(make_app, field, typed, error):
    async with make_app() as h:
        before = h.domain("charlie")
        await h.cursor_to("charlie")
        await h.pilot.press("e")
        await h.pilot.pause()
        form = h.app.screen
        assert isinstance(form, Form)
        await type_into(h, field, typed)
        assert form.widget(field).value == typed  # no character dropped
        await h.pilot.press("ctrl+s")
        await h.settle()
        assert h.app.screen is form and form.widget(field).value == typed
        assert form_errors(form) == {field: error}
        after = h.domain("charlie")
        assert (after.vcpus, after.memory_kib) == (before.vcpus, before.memory_kib)


async def test_edit_moves_with_enter_and_asks_before_applying(make_app):
    async with make_app() as h:
        await h.cursor_to("charlie")
        await h.pilot.press("e")
        await h.pilot.pause()
        form = h.app.screen
        await type_into(h, "vcpus", "2")
        await h.pilot.press("enter")  # next field, nothing submitted yet
        await h.pilot.pause()
        assert h.app.screen is form and form.widget("memory").has_focus
        await type_into(h, "memory", "768")
        await h.pilot.press("enter")  # last field: submits, and the change is shown first
        await h.settle()
        dialog = h.app.screen
        assert isinstance(dialog, ConfirmDialog)
        assert dialog.question == "vCPUs 1 → 2, memory 512.0 MiB → 768.0 MiB: apply?"
        await h.pilot.press("n")
        await h.settle()
        assert isinstance(h.app.screen, VmsScreen) and h.domain("charlie").vcpus == 1
        await h.pilot.press("e")
        await h.pilot.pause()
        await type_into(h, "vcpus", "2")
        await h.pilot.press("ctrl+s")
        await h.settle()
        assert h.app.screen.question == "vCPUs 1 → 2: apply?"
        await h.pilot.press("y")
        await h.settle()
        assert h.domain("charlie").vcpus == 2


async def test_the_same_mistake_reads_the_same_in_create_and_edit(make_app):
    async with make_app() as h:
        await h.pilot.press("n")
        await h.settle()
        create = h.app.screen
        assert isinstance(create, CreateVmScreen)
        await type_into(h, "name", "echo")
        await type_into(h, "vcpus", "1.5")
        await type_into(h, "memory", "2k")
        await h.pilot.press("ctrl+s")
        await h.settle()
        assert h.app.screen is create
        assert form_errors(create) == {"vcpus": "vCPUs must be a whole number from 1 to 4096, not '1.5'",
                                       "memory": "memory (MiB) must be a whole number from 64 to 67108864, not '2k'"}
        assert create.widget("name").value == "echo"  # the valid field is kept too
        assert all(d.name != "echo" for d in h.app.view.domains.values())


async def test_choices_are_selects_not_free_text(make_app):
    async with make_app() as h:
        await h.pilot.press("n")
        await h.settle()
        create = h.app.screen
        assert isinstance(create.widget("firmware"), Select)
        assert isinstance(create.widget("disk"), Select)
        assert create.widget("iso").value == "none" and "loading…" not in screen_text(h.app)
        await h.pilot.press("escape")
        await h.settle()
        assert isinstance(h.app.screen, VmsScreen)


async def test_a_libvirt_error_keeps_the_create_form_open_with_its_input(make_app):
    async with make_app() as h:
        await h.pilot.press("n")
        await h.settle()
        create = h.app.screen
        await type_into(h, "name", "alpha")  # taken
        await h.pilot.press("ctrl+s")
        await h.settle()
        assert h.app.screen is create and create.widget("name").value == "alpha"
        assert "alpha" in text_of(create.query_one("#form-error"))


async def test_a_password_field_hides_what_is_typed_and_returns_it(make_app):
    from hyperconsole.widgets.form import Field

    async with make_app() as h:
        got: list = []
        h.app.push_screen(Form("Password", [Field("secret", "Password", "", password=True)]), got.append)
        await h.pilot.pause()
        await h.pilot.press(*"s3cr3t")
        await h.pilot.pause()
        assert "s3cr3t" not in screen_text(h.app) and "••••••" in screen_text(h.app)
        await h.pilot.press("enter")
        await h.settle()
        assert got == [{"secret": "s3cr3t"}]


async def test_the_footer_of_an_open_form_lists_the_forms_keys_not_the_panes(make_app):
    from textual.widgets._footer import FooterKey

    def footer_keys(screen) -> set[str]:
        return {key.action for key in screen.query(FooterKey)}

    async with make_app() as h:
        await h.pilot.press("3")
        await h.settle()
        assert "act('networks.dns')" in footer_keys(h.app.screen)
        await h.pilot.press("d")  # DNS servers: a form
        await h.settle()
        form = h.app.screen
        assert isinstance(form, Form)
        # Only the form's own keys: none of the pane's (nor the app's pane switches) under it.
        assert footer_keys(form) == {"cancel", "submit"}
        await h.pilot.press("escape", "b")  # New bridge: `?` types into an input, not on a select
        await h.pilot.pause()
        h.app.screen.widget("rstp").focus()
        await h.pilot.press("question_mark")  # `?` lists the form's keys, none of the pane's
        ids = {row.id for row in h.app.screen.rows}
        assert {"form.cancel", "form.submit"} <= ids and not any(i.startswith(("networks.", "ifaces.")) for i in ids)
