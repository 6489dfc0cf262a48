"""The shipped demo host: libvirt's test driver on hyperconsole/demo/data/demo-host.xml."""

from __future__ import annotations

from pathlib import Path

import libvirt

from hyperconsole.virt.connection import ConnectionManager, StateChanged
from hyperconsole.virt.models import ConnectionState

# The test driver's node file has no autostart element; these get it after every open.
AUTOSTART = ("db-primary", "db-replica", "web-01", "web-02", "mail-gw", "k8s-node-a", "k8s-node-b")


def demo_uri() -> str:
    return "test://" + str(Path(__file__).resolve().parent / "data" / "demo-host.xml")


def apply_autostart(conn: libvirt.virConnect) -> None:
    for name in AUTOSTART:
        try:
            conn.lookupByName(name).setAutostart(1)
        except libvirt.libvirtError:
            pass  # renamed or deleted in a previous demo session's copy: nothing to mark
    for net in conn.listAllNetworks(0):
        net.setAutostart(1)
    for pool in conn.listAllStoragePools(0):
        pool.setAutostart(1)


def prepare(manager: ConnectionManager) -> None:
    """Mark autostart now and after every reconnect (each open is a fresh in-memory copy)."""

    def on_state(event: object) -> None:
        if isinstance(event, StateChanged) and event.state is ConnectionState.ACTIVE and event.message:
            apply_autostart(manager.conn)

    apply_autostart(manager.conn)
    manager.add_listener(on_state)
