"""Domains: the definition model (`DomainDetails` with its disks, NICs and displays), its one
parse function, and looking a domain up by UUID or name.

The poll-path row (`DomainInfo`) lives in models.py: the sampler fills it from bulk stats, never
from XML. Every `<disk>` and `<interface>` anywhere in virt/ is read by `parse_disk` / `parse_nic`
here (details pane, "which VMs use X", clone, delete), so they cannot disagree.
"""

from __future__ import annotations

import re
import unicodedata
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import TYPE_CHECKING

import libvirt

from hyperconsole.errors import ValidationError
from hyperconsole.virt import errors as verrors
from hyperconsole.virt import xmlmodel
from hyperconsole.virt.calls import Target, find, split
from hyperconsole.virt.connection import ConnectionManager
from hyperconsole.virt.errors import VirtError
from hyperconsole.virt.models import DomainState
from hyperconsole.virt.xmlmodel import xml

if TYPE_CHECKING:
    from hyperconsole.virt.snapshots import SnapshotInfo

XML_INACTIVE_SECURE = libvirt.VIR_DOMAIN_XML_INACTIVE | libvirt.VIR_DOMAIN_XML_SECURE
_UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$")


@dataclass(frozen=True)
class DiskInfo:
    """One `<disk>`; field order is the element order the builder writes."""

    kind: str = xml("./@type", "file")  # file, block, volume, network, dir
    device: str = xml("./@device", "disk")  # disk, cdrom, floppy, lun
    driver: str = xml("./driver/@name")
    format: str = xml("./driver/@type")
    file: str = xml("./source/@file")
    dev: str = xml("./source/@dev")
    dir: str = xml("./source/@dir")
    pool: str = xml("./source/@pool")
    volume: str = xml("./source/@volume")
    protocol: str = xml("./source/@protocol")
    name: str = xml("./source/@name")
    target: str = xml("./target/@dev")
    bus: str = xml("./target/@bus")
    readonly: bool = xml("./readonly", False, flag=True)
    shareable: bool = xml("./shareable", False, flag=True)

    @property
    def path(self) -> str:
        """The file or block device a file/block disk opens ('' otherwise)."""
        return self.file or self.dev

    @property
    def source(self) -> str:
        """What the details pane shows: path, pool/volume, [protocol:]name; '' when empty."""
        if self.kind == "volume":
            return f"{self.pool}/{self.volume}" if self.pool or self.volume else ""
        if self.kind == "network":
            return f"{self.protocol}:{self.name}" if self.protocol else self.name
        return self.file or self.dev or self.dir

    @property
    def shared(self) -> bool:
        """cdrom, floppy, read-only or shareable: never copied or deleted with the VM."""
        return self.device in ("cdrom", "floppy") or self.readonly or self.shareable


@dataclass(frozen=True)
class NicInfo:
    kind: str = xml("./@type")  # network, bridge, user, direct …
    mac: str = xml("./mac/@address")
    network: str = xml("./source/@network")
    bridge: str = xml("./source/@bridge")  # type='bridge', and the live XML of type='network'
    dev: str = xml("./source/@dev")
    path: str = xml("./source/@path")
    address: str = xml("./source/@address")
    model: str = xml("./model/@type")
    target: str = xml("./target/@dev")  # host-side tap device when running
    addresses: tuple[str, ...] = ()  # from DHCP leases, filled by lifecycle.get_details

    @property
    def source(self) -> str:
        """Network or bridge name (or device, socket path, address for other kinds)."""
        return self.network or self.bridge or self.dev or self.path or self.address


@dataclass(frozen=True)
class GraphicsInfo:
    kind: str = xml("./@type")  # vnc, spice
    port: int | None = xml("./@port", None)  # None: assigned when the VM starts
    autoport: bool = xml("./@autoport", False)
    listen: str = xml("./@listen")

    def tunnel_hint(self, host: str = "<host>") -> str:
        if self.port is None or self.port <= 0:
            return f"{self.kind.upper()} port is assigned when the VM runs"
        listen = self.listen or "127.0.0.1"
        if listen in ("0.0.0.0", "::"):
            listen = "127.0.0.1"
        return f"ssh -L {self.port}:{listen}:{self.port} {host}  then connect a {self.kind.upper()} viewer to localhost:{self.port}"


@dataclass(frozen=True)
class DomainDetails:
    """A domain's definition as the details pane shows it; read on demand, never on the poll path."""

    uuid: str = xml("./uuid")
    name: str = xml("./name")
    description: str = xml("./description")
    os_type: str = xml("./os/type")
    firmware: str = "bios"  # bios or uefi
    disks: tuple[DiskInfo, ...] = ()
    nics: tuple[NicInfo, ...] = ()
    graphics: tuple[GraphicsInfo, ...] = ()
    snapshots: tuple[SnapshotInfo, ...] = ()
    has_nvram: bool = False


def firmware_of(root: ET.Element) -> str:
    """'uefi' for <os firmware='efi'>, a pflash/OVMF <loader> or an <nvram>; otherwise 'bios'."""
    os_el = root.find("os")
    if os_el is None:
        return "bios"
    if os_el.get("firmware") == "efi":
        return "uefi"
    loader = os_el.find("loader")
    if loader is not None:
        path = (loader.text or "").strip().lower()
        if loader.get("type") == "pflash" or any(k in path for k in ("ovmf", "edk2", "efi", "aavmf")):
            return "uefi"
    if os_el.find("nvram") is not None:
        return "uefi"
    return "bios"


def parse_disk(el: ET.Element) -> DiskInfo:
    return xmlmodel.read(DiskInfo, el)


def parse_nic(el: ET.Element) -> NicInfo:
    addresses = tuple(ip.get("address", "") for ip in el.findall("ip") if ip.get("address"))
    return xmlmodel.read(NicInfo, el, addresses=addresses)


def _graphics(el: ET.Element) -> GraphicsInfo:
    g = xmlmodel.read(GraphicsInfo, el)
    port = g.port if g.port is not None and g.port > 0 else None  # -1 means "assigned at start"
    if port is None and el.get("tlsPort", "").isdigit() and int(el.get("tlsPort", "0")) > 0:
        port = int(el.get("tlsPort", "0"))
    listen = g.listen
    if not listen:
        for lst in el.findall("listen"):
            listen = lst.get("address") or lst.get("socket") or ""
            if listen:
                break
    return GraphicsInfo(g.kind, port, g.autoport, listen)


def read_domain(root: ET.Element, snapshots: tuple[SnapshotInfo, ...] = ()) -> DomainDetails:
    devices = root.find("devices")
    devices = devices if devices is not None else ET.Element("devices")
    os_el = root.find("os")
    return xmlmodel.read(
        DomainDetails, root,
        firmware=firmware_of(root),
        disks=tuple(parse_disk(d) for d in devices.findall("disk")),
        nics=tuple(parse_nic(n) for n in devices.findall("interface")),
        graphics=tuple(_graphics(g) for g in devices.findall("graphics")),
        snapshots=snapshots,
        has_nvram=os_el is not None and (os_el.find("nvram") is not None or os_el.get("firmware") == "efi"),
    )


def parse_domain_xml(text: str, snapshots: tuple[SnapshotInfo, ...] = ()) -> DomainDetails:
    """Domain XML (live or inactive) → `DomainDetails`. Raises ValidationError if it does not parse."""
    return read_domain(xmlmodel.parse(text, "domain"), snapshots)


def check_description(text: str, what: str = "description") -> str:
    """Free text (VM and snapshot descriptions): line breaks and tabs are fine, other control
    characters are refused — libvirt would store them and then emit XML that does not parse."""
    if any(unicodedata.category(ch) == "Cc" and ch not in "\n\t" for ch in text):
        raise ValidationError(f"{what} may not contain control characters")
    return text


# --------------------------------------------------------------------------- lookup


def lookup(conn: libvirt.virConnect, manager: ConnectionManager | None, ident: str) -> libvirt.virDomain:
    """Domain by UUID (with or without dashes) or by name. Raises ValidationError, VirtError."""
    if not ident:
        raise ValidationError("no VM given")
    try:
        if _UUID_RE.match(ident):
            try:
                return conn.lookupByUUIDString(ident)
            except libvirt.libvirtError as exc:
                if not verrors.is_no_domain(exc):
                    raise
        return conn.lookupByName(ident)
    except libvirt.libvirtError as exc:
        if manager is not None:
            manager.check_error(exc)
        if verrors.is_no_domain(exc):
            raise VirtError(f"no VM {ident!r}: it was deleted or renamed") from exc
        raise VirtError.wrap(f"look up VM {ident}", exc) from exc


def domain(target: Target, ident: str) -> tuple[libvirt.virConnect, ConnectionManager | None, libvirt.virDomain]:
    conn, manager = split(target)
    return conn, manager, lookup(conn, manager, ident)


def state_of(dom: libvirt.virDomain) -> DomainState:
    return DomainState.of(dom.state()[0])


def name_free(conn: libvirt.virConnect, manager: ConnectionManager | None, name: str) -> None:
    """Raises ValidationError when a VM of that name exists."""
    if find(manager, f"check name {name}", lambda: conn.lookupByName(name), libvirt.VIR_ERR_NO_DOMAIN) is not None:
        raise ValidationError(f"a VM named {name!r} already exists")
