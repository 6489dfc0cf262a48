"""Storage pane on per-test test-driver hosts: pools, paged volumes, volume operations."""

from __future__ import annotations

import libvirt

from hyperconsole.messages import ActionDone
from hyperconsole.screens.storage import PAGE, StorageScreen
from hyperconsole.widgets.confirm import ConfirmDialog
from hyperconsole.widgets.form import Form
from tests.fixtures import GIB, build_host_xml, domain_xml, pool_xml, volume_xml
from tests.ui.conftest import fill_form, form_errors, text_of


def host(n_volumes: int = 3) -> str:
    vols = [volume_xml("web.qcow2", capacity=20 * GIB, allocation=5 * GIB)]
    vols += [volume_xml(f"vol-{i:04d}.qcow2", capacity=GIB, allocation=GIB // 8) for i in range(n_volumes - 1)]
    return build_host_xml(
        domains=[domain_xml("web", "running", disks=[{"pool": "default", "volume": "web.qcow2"}])],
        pools=[pool_xml("default", "/var/lib/libvirt/images", volumes=vols),
               pool_xml("full", "/srv/full", volumes=[volume_xml("big.raw", capacity=96 * GIB, allocation=96 * GIB,
                                                                 fmt="raw")])],
    )


async def open_pane(h) -> StorageScreen:
    await h.pilot.press("4")
    for _ in range(20):
        await h.settle()
        screen = h.app.screen
        if isinstance(screen, StorageScreen) and screen.listing is not None:
            return screen
    raise AssertionError("storage pane never listed volumes")


async def fill(h, values: dict) -> None:
    await fill_form(h.pilot, values)
    await h.settle()


def volume_names(screen) -> list[str]:
    return screen.volumes_view.shown_keys()


async def select_volume(h, screen, name: str) -> None:
    screen.volumes_view.focus()
    screen.volumes_view.move_to(name)
    await h.pilot.pause()


async def test_pools_volumes_users_and_low_space_warning(make_app):
    async with make_app(host()) as h:
        screen = await open_pane(h)
        assert [p.name for p in screen.pools] == ["default", "full"]
        assert "full is 96% full" in text_of(screen.query_one("#space-warning"))
        assert volume_names(screen) == ["vol-0000.qcow2", "vol-0001.qcow2", "web.qcow2"]
        row = screen.volumes_view.table.get_row("web.qcow2")
        assert row[5].plain == "web"  # used by (after the selection mark)


async def test_large_pool_is_paged(make_app):
    async with make_app(host(450)) as h:
        screen = await open_pane(h)
        assert len(screen.listing) == 450
        assert len(volume_names(screen)) == PAGE
        await select_volume(h, screen, volume_names(screen)[PAGE // 2])
        await h.settle()
        assert len(volume_names(screen)) == PAGE  # nothing more read while far from the end
        await select_volume(h, screen, volume_names(screen)[-1])
        await h.settle()
        assert len(volume_names(screen)) == 2 * PAGE
        assert "[400]" in str(screen.volumes_view.border_title) and "more as the cursor" in screen.volumes_view.note


async def test_create_clone_and_delete_volumes(make_app):
    async with make_app(host()) as h:
        screen = await open_pane(h)
        await h.pilot.press("tab", "n")  # volume keys work in the volumes table
        await h.pilot.pause()
        await fill(h, {"name": "data.qcow2", "size": "2G", "format": "qcow2"})
        await h.settle()
        assert "data.qcow2" in volume_names(screen)
        await select_volume(h, screen, "data.qcow2")
        await h.pilot.press("C")
        await h.pilot.pause()
        await fill(h, {"name": "data-copy.qcow2"})
        assert "data-copy.qcow2" in volume_names(screen)
        await select_volume(h, screen, "data-copy.qcow2")
        await h.pilot.press("delete")
        await h.pilot.pause()
        assert isinstance(h.app.screen, ConfirmDialog)
        await h.pilot.press("y")
        await h.settle()
        assert "data-copy.qcow2" not in volume_names(screen)
        assert all(m.error is None for m in h.of_type(ActionDone))


async def test_deleting_a_volume_in_use_says_who_uses_it(make_app):
    async with make_app(host()) as h:
        screen = await open_pane(h)
        await select_volume(h, screen, "web.qcow2")
        await h.pilot.press("delete")
        await h.pilot.pause()
        dialog = h.app.screen
        assert isinstance(dialog, ConfirmDialog) and "web.qcow2 (VM web)" in dialog.detail
        await h.pilot.press("n")
        await h.settle()
        assert "web.qcow2" in volume_names(screen)


async def test_bad_volume_input_is_one_line_and_creates_nothing(make_app):
    async with make_app(host()) as h:
        screen = await open_pane(h)
        before = volume_names(screen)
        await h.pilot.press("tab", "n")
        await h.pilot.pause()
        await fill(h, {"name": "../escape", "size": "lots", "format": "qcow2"})
        form = h.app.screen
        assert isinstance(form, Form) and form.widget("size").value == "lots"
        assert form_errors(form) == {"name": "volume name may not contain '/'",
                                     "size": "size 'lots' is not understood; use e.g. 10G, 512M or 1.5T"}
        await h.pilot.press("escape")
        await h.settle()
        assert volume_names(screen) == before
        assert [m.error for m in h.of_type(ActionDone) if m.error] == []


BOTH = libvirt.VIR_DOMAIN_AFFECT_LIVE | libvirt.VIR_DOMAIN_AFFECT_CONFIG


async def test_a_vm_with_an_escape_in_its_description_hides_no_volume(make_app, monkeypatch):
    """libvirt emits XML that does not parse for a description holding ESC: the volume table
    still lists every volume with its users, and the pane names the VM it read partly."""
    async with make_app(host()) as h:
        said: list[tuple[str, str]] = []
        monkeypatch.setattr(h.app, "notify", lambda message, **kw: said.append((message, kw.get("severity", ""))))
        h.app.manager.conn.lookupByName("web").setMetadata(libvirt.VIR_DOMAIN_METADATA_DESCRIPTION, "\x1b[2J", None, None, BOTH)
        screen = await open_pane(h)
        assert volume_names(screen) == ["vol-0000.qcow2", "vol-0001.qcow2", "web.qcow2"]
        assert screen.volumes_view.table.get_row("web.qcow2")[5].plain == "web"  # after the selection mark
        warnings = [m for m, severity in said if severity == "warning" and m.startswith("web: ")]
        assert len(warnings) == 1 and "\x1b" not in warnings[0], said
