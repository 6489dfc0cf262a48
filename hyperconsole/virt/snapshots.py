"""Snapshots: the model, its one parse function, and list / create / revert / delete."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, replace

import libvirt

from hyperconsole import names
from hyperconsole.errors import ValidationError
from hyperconsole.virt import xmlmodel
from hyperconsole.virt.calls import Target, calling, fail
from hyperconsole.virt.domains import check_description, domain
from hyperconsole.virt.errors import VirtError
from hyperconsole.virt.xmlmodel import xml


@dataclass(frozen=True)
class SnapshotInfo:
    name: str = xml("./name")
    parent: str | None = xml("./parent/name", None)
    description: str = xml("./description")
    state: str = xml("./state")
    creation_time: int = xml("./creationTime", 0)
    current: bool = False
    depth: int = 0


def parse_snapshot(root: ET.Element, current: bool = False) -> SnapshotInfo:
    return xmlmodel.read(SnapshotInfo, root, current=current)


def snapshot_xml(name: str, description: str = "") -> str:
    return xmlmodel.build(SnapshotInfo(name=name, description=description), "domainsnapshot")


def _read(snap: libvirt.virDomainSnapshot) -> SnapshotInfo:
    try:
        current = bool(snap.isCurrent(0))
    except libvirt.libvirtError:
        current = False
    return parse_snapshot(xmlmodel.parse(snap.getXMLDesc(0), "snapshot"), current)


def snapshot_tree(items: list[SnapshotInfo]) -> tuple[SnapshotInfo, ...]:
    """Depth-first order: each snapshot followed by its children (oldest first), with depth."""
    by_parent: dict[str | None, list[SnapshotInfo]] = {}
    known = {s.name for s in items}
    for s in items:
        parent = s.parent if s.parent in known else None
        by_parent.setdefault(parent, []).append(s)
    for children in by_parent.values():
        children.sort(key=lambda s: (s.creation_time, s.name))
    out: list[SnapshotInfo] = []
    stack = [(s, 0) for s in reversed(by_parent.get(None, []))]
    while stack:
        snap, depth = stack.pop()
        out.append(replace(snap, depth=depth))
        stack.extend((c, depth + 1) for c in reversed(by_parent.get(snap.name, [])))
    return tuple(out)


def of_domain(manager, dom: libvirt.virDomain) -> tuple[SnapshotInfo, ...]:
    with calling(manager, f"list snapshots of {dom.name()}"):
        return snapshot_tree([_read(s) for s in dom.listAllSnapshots(0)])


def list_snapshots(target: Target, ident: str) -> tuple[SnapshotInfo, ...]:
    """Snapshots in tree order (parents before children) with depth. Raises VirtError."""
    _conn, manager, dom = domain(target, ident)
    return of_domain(manager, dom)


def _snapshot(manager, dom, name: str) -> libvirt.virDomainSnapshot:
    try:
        return dom.snapshotLookupByName(name, 0)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN_SNAPSHOT:
            if manager is not None:
                manager.check_error(exc)
            raise ValidationError(f"{dom.name()} has no snapshot named {name!r}") from exc
        raise fail(manager, f"look up snapshot {name}", exc) from exc


def create_snapshot(target: Target, ident: str, name: str, description: str = "") -> SnapshotInfo:
    """Snapshot with libvirt's defaults for the domain's state (QEMU: internal qcow2 snapshot,
    with memory when running). Raises ValidationError (bad or taken name), VirtError."""
    names.object_name(name, "snapshot name")
    check_description(description, "snapshot description")
    _conn, manager, dom = domain(target, ident)
    with calling(manager, f"list snapshots of {dom.name()}"):
        taken = set(dom.snapshotListNames(0))
    if name in taken:
        raise ValidationError(f"{dom.name()} already has a snapshot named {name!r}")
    with calling(manager, f"snapshot {dom.name()}"):
        snap = dom.snapshotCreateXML(snapshot_xml(name, description), 0)
        return _read(snap)


def revert_snapshot(target: Target, ident: str, name: str) -> None:
    """Return the VM to the snapshot (its disk, and memory/run state if it has them)."""
    _conn, manager, dom = domain(target, ident)
    snap = _snapshot(manager, dom, name)
    with calling(manager, f"revert {dom.name()} to {name}"):
        dom.revertToSnapshot(snap, 0)


def delete_snapshot(target: Target, ident: str, name: str, with_children: bool = False) -> None:
    """Delete one snapshot; its children are re-parented to its parent (libvirt's default).
    with_children=True deletes the whole subtree instead."""
    _conn, manager, dom = domain(target, ident)
    snap = _snapshot(manager, dom, name)
    flags = libvirt.VIR_DOMAIN_SNAPSHOT_DELETE_CHILDREN if with_children else 0
    with calling(manager, f"delete snapshot {name} of {dom.name()}"):
        snap.delete(flags)
