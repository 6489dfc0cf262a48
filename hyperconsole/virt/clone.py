"""Clone a shut-off VM, as virt-manager's cloner does: new name, UUID (and SMBIOS system UUID),
MACs and automatic display ports; each writable disk volume copied."""

from __future__ import annotations

import logging
import uuid as uuidlib
import xml.etree.ElementTree as ET
from dataclasses import dataclass

import libvirt

from hyperconsole import names
from hyperconsole.errors import ValidationError
from hyperconsole.virt import xmlmodel
from hyperconsole.virt.calls import Target, calling
from hyperconsole.virt.domains import XML_INACTIVE_SECURE, domain, name_free, state_of
from hyperconsole.virt.models import DomainState
from hyperconsole.virt.volumes import build_volume_xml, delete_quietly, disk_volumes, free_name, read_volume

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CloneResult:
    uuid: str
    name: str
    volumes: tuple[str, ...]  # "pool/volume" of each copied disk

    def summary(self) -> str:
        return f"created {self.name} (copied {', '.join(self.volumes) or 'no disks'})"


def clone_volume_name(old_vol: str, old_name: str, new_name: str, target: str) -> str:
    if old_name and old_name in old_vol:
        return old_vol.replace(old_name, new_name, 1)
    ext = old_vol.rpartition(".")[2] if "." in old_vol else ""
    return f"{new_name}-{target}.{ext}" if ext else f"{new_name}-{target}"


def fresh_identity(root: ET.Element, new_name: str) -> None:
    """What must differ between a VM and its clone: name, UUID, the SMBIOS system UUID (libvirt
    takes a domain's UUID from it when <uuid> is absent, so a copied one collides), MACs and tap
    names, fixed display ports, and the NVRAM file (a UEFI clone starts from a fresh store)."""
    new_uuid = str(uuidlib.uuid4())
    name_el = root.find("name")
    (name_el if name_el is not None else ET.SubElement(root, "name")).text = new_name
    uuid_el = root.find("uuid")
    (uuid_el if uuid_el is not None else ET.SubElement(root, "uuid")).text = new_uuid
    for entry in root.findall("sysinfo/system/entry[@name='uuid']"):
        entry.text = new_uuid
    for nic in root.findall("devices/interface"):
        for tag in ("mac", "target"):
            for el in nic.findall(tag):
                nic.remove(el)
    for g in root.findall("devices/graphics"):
        for attr in ("port", "tlsPort", "websocket"):
            g.attrib.pop(attr, None)
        g.set("autoport", "yes")
    os_el = root.find("os")
    if os_el is not None:
        for nvram in os_el.findall("nvram"):
            os_el.remove(nvram)


def clone(target: Target, ident: str, new_name: str) -> CloneResult:
    """Copy a shut-off VM: new UUID (the SMBIOS system UUID follows it), new MACs (libvirt
    generates them), VNC/SPICE on automatic ports, each writable disk volume copied with
    createXMLFrom into its own pool; cdroms and read-only/shareable disks are shared.
    A writable disk that is not a pool volume refuses the clone. The NVRAM path is dropped, so a
    UEFI clone starts from a fresh variable store. Nothing is left behind on failure.
    Raises ValidationError, VirtError."""
    names.vm_name(new_name)
    conn, manager, dom = domain(target, ident)
    name = dom.name()
    with calling(manager, f"read {name}"):
        if state_of(dom) != DomainState.SHUTOFF:
            raise ValidationError(f"{name} must be shut off to clone it", hint="shut it down first")
        xml = dom.XMLDesc(XML_INACTIVE_SECURE)
        name_free(conn, manager, new_name)
        root = xmlmodel.parse(xml, "domain")
        disks = disk_volumes(conn, root)
    plan = []
    for d in disks:
        if d.disk.shared or not d.disk.source:
            continue
        if d.vol is None:
            raise ValidationError(f"cannot copy disk {d.disk.target or '?'}: it {d.reason}",
                                  hint="only storage pool volumes are copied")
        plan.append(d)

    created: list[libvirt.virStorageVol] = []
    copied: list[str] = []
    try:
        with calling(manager, f"copy disks of {name}"):
            for d in plan:
                assert d.vol is not None and d.pool is not None
                source = read_volume(d.pool.name(), d.vol)
                vol_name = free_name(d.pool, clone_volume_name(source.name, name, new_name, d.disk.target))
                new_vol = d.pool.createXMLFrom(build_volume_xml(vol_name, source.capacity, source.format or "raw"),
                                               d.vol, 0)
                created.append(new_vol)
                copied.append(f"{d.pool.name()}/{new_vol.name()}")
                src = d.element.find("source")
                assert src is not None
                if d.element.get("type") == "volume":
                    src.set("volume", new_vol.name())
                elif "dev" in src.attrib:
                    src.set("dev", new_vol.path())
                else:
                    src.set("file", new_vol.path())
        fresh_identity(root, new_name)
        with calling(manager, f"define clone {new_name}"):
            new_dom = conn.defineXML(xmlmodel.to_string(root))
            return CloneResult(new_dom.UUIDString(), new_dom.name(), tuple(copied))
    except BaseException:
        problems = delete_quietly(created)
        if problems:
            log.error("clone of %s: could not remove copied volumes: %s", name, "; ".join(problems))
        raise


