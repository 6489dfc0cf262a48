"""`--readonly`: every key of every pane, every table and every dialog is pressed, and libvirt
and the NixOS dir must see no change.

The connection underneath is read-write on purpose: only the console's own read-only mode stands
between a key and a change, so an action wrongly declared non-mutating changes the test driver's
state (or the NixOS dir) and this test fails. Each dialog a key opens is answered yes / submitted
before it is closed, so an action that asks first is carried through too; and no operation may
even be attempted (one that fails on its own changes nothing either).
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import libvirt
import pytest

from hyperconsole import resources
from hyperconsole.messages import ActionDone
from hyperconsole.screens.snapshots import SnapshotsScreen
from hyperconsole.widgets.resource_view import ResourceView
from scripts.scenes import demo_app, settle

# Every key the registry and the resource view bind, pressed on every table of every pane
# (esc only closes: it is pressed to leave each dialog).
KEYS = sorted(({a.key for a in resources.ACTIONS.values()}
               | {b.key for b in ResourceView.BINDINGS} | {"enter", "home", "end", "tab"}) - {"escape"})
ANSWERS = ("y", "enter", "ctrl+s")  # confirm a question, submit a form
PANES = ("1", "2", "3", "4", "5", "6", "7")


def libvirt_state(conn: libvirt.virConnect) -> dict:
    inactive = libvirt.VIR_DOMAIN_XML_INACTIVE
    state: dict = {}
    for dom in conn.listAllDomains():
        state[f"domain {dom.name()}"] = (dom.state(), dom.autostart(), dom.hasManagedSaveImage(),
                                         dom.XMLDesc(0), dom.XMLDesc(inactive), sorted(dom.snapshotListNames()),
                                         dom.snapshotCurrent().getName() if dom.hasCurrentSnapshot() else None)
    for net in conn.listAllNetworks():
        state[f"network {net.name()}"] = (net.isActive(), net.autostart(), net.XMLDesc(0))
    for pool in conn.listAllStoragePools():
        volumes = {v.name(): v.XMLDesc(0) for v in pool.listAllVolumes()} if pool.isActive() else {}
        state[f"pool {pool.name()}"] = (pool.isActive(), pool.autostart(), pool.XMLDesc(0), volumes)
    return state


def tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


async def answer_dialogs(pilot, under, nested: bool) -> None:
    """Answer and close whatever the last key opened, until `under` is on top again."""
    app = pilot.app
    for _ in range(8):
        if app.screen is under:
            return
        if nested and isinstance(app.screen, SnapshotsScreen):
            await press_everything(pilot, app.screen, nested=False)
        for key in (*ANSWERS, "escape"):
            if app.screen is under:
                return
            await pilot.press(key)
            await settle(pilot)
    raise AssertionError(f"a dialog would not close: {app.screen!r} over {under!r}")


async def press_everything(pilot, screen, nested: bool = True) -> None:
    views = list(screen.query(ResourceView)) or [None]
    for view in views:
        for key in KEYS:
            if view is not None:
                view.focus()
            await pilot.press(key)
            await settle(pilot)
            assert screen in pilot.app.screen_stack, f"{key} closed {screen!r}"
            await answer_dialogs(pilot, screen, nested)


@pytest.mark.skipif(shutil.which("ip") is None, reason="the Networks pane reads host interfaces with ip")
async def test_every_key_of_every_pane_changes_nothing_when_readonly():
    app = demo_app()
    if shutil.which("restic"):  # the Backups pane with a job and snapshots, so its keys meet rows
        from hyperconsole.demo import backup as demo_backup

        demo_backup.ensure(app.config.nixos_dir, app.manager.conn)
    app.view.readonly = True  # the console's --readonly over a read-write connection (see above)
    nixos = Path(app.config.nixos_dir)
    posted: list = []
    async with app.run_test(size=(150, 42), message_hook=posted.append) as pilot:
        await settle(pilot)
        conn = app.manager.conn
        before, files = libvirt_state(conn), tree(nixos)
        assert before and files
        for pane in PANES:
            await pilot.press(pane)
            for _ in range(3):
                await settle(pilot)
            await press_everything(pilot, app.screen)
            assert libvirt_state(conn) == before, f"pane {pane} changed libvirt"
            assert tree(nixos) == files, f"pane {pane} changed the NixOS dir"
            # Not even tried: an operation that failed on its own would change nothing either.
            assert [m.label for m in posted if isinstance(m, ActionDone)] == [], f"pane {pane} ran an operation"
        assert app.view.pending is None
