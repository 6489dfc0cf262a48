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


DEMO_HOST_NAMES = ("demo", "demo-b", "demo-c", "demo-d", "demo-e", "demo-f", "demo-g", "demo-h")


def fleet_uris(count: int, directory: Path) -> list[tuple[str, str]]:
    """(host name, URI) of a demo fleet: the demo host's VMs dealt out over `count` test-driver
    hosts (each with the same networks and pools, so offline migration works between them)."""
    import xml.etree.ElementTree as ET

    from hyperconsole import safefs

    count = max(1, min(count, len(DEMO_HOST_NAMES)))
    if count == 1:
        return [(DEMO_HOST_NAMES[0], demo_uri())]
    ET.register_namespace("test", "http://libvirt.org/schemas/domain/test/1.0")
    source = Path(demo_uri().removeprefix("test://"))
    safefs.ensure_dir(directory, parents=True)
    hosts = []
    for index in range(count):
        root = ET.parse(source).getroot()
        for n, dom in enumerate(root.findall("domain")):
            if n % count != index:
                root.remove(dom)
        path = directory / f"demo-host-{index + 1}.xml"
        safefs.atomic_write(path, ET.tostring(root, encoding="utf-8", xml_declaration=True))
        hosts.append((DEMO_HOST_NAMES[index], f"test://{path}"))
    return hosts
