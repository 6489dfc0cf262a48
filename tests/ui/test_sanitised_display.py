"""Text from the system and libvirt reaches the terminal with its control characters made
visible: a mount point or a VM name holding terminal sequences is shown, never obeyed."""

from __future__ import annotations

import os
import subprocess

import pytest

from hyperconsole.screens.details import DetailsScreen
from hyperconsole.virt import lifecycle
from tests.ui.conftest import screen_text, wait_until

HOSTILE = "ev\x1b]0;pwned\x07\x1b[2Jil"
SHOWN = "ev\\x1b]0;pwned\\x07\\x1b[2Jil"
VM_NAME = "vm\x1b[2J\x07"  # short enough for the name column
VM_SHOWN = "vm\\x1b[2J\\x07"


def assert_shown_not_obeyed(text: str, shown: str) -> None:
    assert "\x1b" not in text and "\x07" not in text
    assert shown in text


@pytest.fixture
def hostile_mount(tmp_path):
    """A real ext2 file system on a loop device, mounted at a path holding terminal sequences
    (as psutil.disk_partitions reports it from /proc/self/mounts)."""
    if os.geteuid() != 0:
        reason = "mounting a loop device needs root"
        pytest.fail(reason) if os.environ.get("CI") == "true" else pytest.skip(reason)
    image = tmp_path / "fs.img"
    image.write_bytes(b"\0" * (4 << 20))
    subprocess.run(["mkfs.ext2", "-q", str(image)], check=True)
    point = tmp_path / HOSTILE
    point.mkdir()
    subprocess.run(["mount", "-o", "loop", str(image), str(point)], check=True)
    try:
        yield str(point)
    finally:
        subprocess.run(["umount", str(point)], check=True)


async def test_a_mount_point_with_terminal_sequences_is_shown_escaped_on_the_dashboard(make_app, hostile_mount):
    async with make_app(size=(200, 50)) as h:
        await h.pilot.press("1")
        await wait_until(h.pilot, lambda: h.app.view.host is not None
                         and any(d.mountpoint == hostile_mount for d in h.app.view.host.disks), 10)
        await h.pilot.pause()
        text = screen_text(h.app)
        assert_shown_not_obeyed(text, SHOWN)


async def test_a_vm_name_in_the_list_confirm_and_toast_show_it_escaped(make_app):
    async with make_app(size=(200, 50)) as h:
        dom = h.app.manager.conn.lookupByName("charlie")
        dom.rename(VM_NAME)
        h.app.poll_domains()
        await wait_until(h.pilot, lambda: any(d.name == VM_NAME for d in h.app.view.domains.values()), 10)
        await h.pilot.pause()
        assert_shown_not_obeyed(screen_text(h.app), VM_SHOWN)
        # The confirm dialog that names it, and a notification that names it.
        await h.cursor_to(VM_NAME)
        await h.pilot.press("delete")
        await h.pilot.pause()
        assert_shown_not_obeyed(screen_text(h.app), VM_SHOWN)
        await h.pilot.press("n")
        h.app.notify(f"{VM_NAME} is shut off")
        await h.pilot.pause()
        assert_shown_not_obeyed(screen_text(h.app), VM_SHOWN)


async def test_details_show_a_description_with_escapes_escaped(make_app):
    """The details of a VM whose name and description hold terminal sequences (as libvirt's
    own metadata calls can set them) render escaped."""
    import dataclasses

    from hyperconsole.screens.details import render_details

    async with make_app(size=(200, 50)) as h:
        info = h.domain("alpha")
        details = dataclasses.replace(lifecycle.get_details(h.app.manager, info.uuid), name=HOSTILE, description=HOSTILE)
        h.app.push_screen(DetailsScreen(info))
        await h.settle()
        h.app.screen.query_one("#details").update(render_details(info, details, "host"))
        await h.pilot.pause()
        text = screen_text(h.app)
        assert_shown_not_obeyed(text, SHOWN)
        assert text.count(SHOWN) >= 2
