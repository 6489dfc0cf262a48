"""libvirt networks: the model, its one parse function, DHCP leases, and their operations.

Host bridges and VLANs (NixOS fragments) are not here; this module only talks to libvirt.
Which VMs sit on a network or bridge is `inventory.usage` (one walk over every domain).
Contract: see calls.py. Called from thread workers, never the poll path.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass, replace
from urllib.parse import urlsplit

import libvirt

from hyperconsole import names
from hyperconsole.errors import ValidationError
from hyperconsole.virt import errors as verrors
from hyperconsole.virt import inventory, xmlmodel
from hyperconsole.virt.calls import Target, calling, find, split
from hyperconsole.virt.errors import VirtError
from hyperconsole.virt.inventory import Usage
from hyperconsole.virt.xmlmodel import xml

log = logging.getLogger(__name__)

MODES = ("nat", "route", "isolated", "bridge")
_XML_INACTIVE = getattr(libvirt, "VIR_NETWORK_XML_INACTIVE", 1)
_AFFECT_LIVE = libvirt.VIR_NETWORK_UPDATE_AFFECT_LIVE
_AFFECT_CONFIG = libvirt.VIR_NETWORK_UPDATE_AFFECT_CONFIG


# --------------------------------------------------------------------------- models


@dataclass(frozen=True)
class IpRange:
    """One `<ip>` of a network: gateway address/prefix and its DHCP ranges."""

    family: str  # ipv4 | ipv6
    address: str  # the host's (gateway) address on the network
    prefix: int
    dhcp: tuple[tuple[str, str], ...] = ()

    @property
    def cidr(self) -> str:
        return f"{self.address}/{self.prefix}"


@dataclass(frozen=True)
class NetworkInfo:
    name: str = xml("./name")
    uuid: str = xml("./uuid")
    active: bool = False  # state flags come from the API, not the XML
    autostart: bool = False
    persistent: bool = True
    forward_mode: str = "isolated"  # nat, route, open, bridge, … or "isolated" (no <forward>)
    bridge: str = xml("./bridge/@name")  # virbrN for nat/route/isolated, the host bridge for mode bridge
    forward_dev: str = xml("./forward/@dev")
    ips: tuple[IpRange, ...] = ()
    vms: tuple[str, ...] = ()  # names of VMs with a NIC on this network (inactive or live XML)

    @property
    def ip_ranges(self) -> tuple[str, ...]:
        """Per address: its DHCP ranges ('start-end'), or 'address/prefix' when it has none."""
        out: list[str] = []
        for ip in self.ips:
            out.extend(f"{start}-{end}" for start, end in ip.dhcp) if ip.dhcp else out.append(ip.cidr)
        return tuple(out)


@dataclass(frozen=True)
class NetworksOverview:
    networks: tuple[NetworkInfo, ...]
    usage: Usage


@dataclass(frozen=True)
class Lease:
    mac: str
    ip: str  # address/prefix
    hostname: str
    expires: int  # unix time, 0 = never
    client_id: str = ""


@dataclass(frozen=True)
class LeaseList:
    network: str
    leases: tuple[Lease, ...] = ()
    supported: bool = True  # False: the driver has no lease database (test driver), not "no leases"
    reason: str = ""


@dataclass(frozen=True)
class NewNetworkSpec:
    """What the create-network form collects.

    mode: nat | route | isolated | bridge. For nat/route `cidr` is required: the host's address
    with prefix ("192.168.100.1/24"; a network address "192.168.100.0/24" means gateway .1).
    isolated may have a cidr or none. bridge: `bridge` names an EXISTING host bridge and there is
    no cidr/DHCP (the LAN's own DHCP serves the VMs). For the others `bridge` optionally names the
    virbr device libvirt creates (empty: libvirt picks virbrN). dhcp_start/end: both or neither.
    """

    name: str
    mode: str = "nat"
    cidr: str | None = None
    dhcp_start: str | None = None
    dhcp_end: str | None = None
    bridge: str = ""
    forward_dev: str = ""  # nat/route: leave via this host interface only


@dataclass(frozen=True)
class NetworkCreateResult:
    name: str
    uuid: str
    started: bool
    autostart: bool
    xml: str

    def summary(self) -> str:
        state = "started" if self.started else "defined (not started)"
        return f"network {self.name} {state}" + (", autostart on" if self.autostart else "")


@dataclass(frozen=True)
class DhcpEditResult:
    name: str
    old: tuple[str, str] | None
    new: tuple[str, str]
    method: str  # "update" (virNetworkUpdate) or "redefine"
    config: bool  # the persistent definition holds the new range
    live: bool  # the running network (dnsmasq) uses it now
    reason: str = ""  # why not live

    def summary(self) -> str:
        rng = f"{self.new[0]}-{self.new[1]}"
        where = []
        if self.config:
            where.append("saved")
        where.append("live now" if self.live else f"not live ({self.reason})" if self.reason else "not live")
        return f"DHCP range of {self.name} set to {rng}: {', '.join(where)} [{self.method}]"


@dataclass(frozen=True)
class NetworkDeleteResult:
    name: str
    destroyed: bool
    undefined: bool
    vms: tuple[str, ...]  # VMs that had a NIC on it (they lose connectivity / fail to start)

    def summary(self) -> str:
        text = f"deleted network {self.name}"
        if self.vms:
            text += "; VMs left without it: " + ", ".join(self.vms)
        return text


# --------------------------------------------------------------------------- reading


def _ip_ranges(root: ET.Element) -> tuple[IpRange, ...]:
    out = []
    for ip in root.findall("ip"):
        addr = ip.get("address")
        if not addr:
            continue
        family = ip.get("family") or ("ipv6" if ":" in addr else "ipv4")
        if ip.get("prefix"):
            prefix = int(ip.get("prefix", "0"))
        elif ip.get("netmask"):
            prefix = ipaddress.IPv4Network(f"0.0.0.0/{ip.get('netmask')}").prefixlen
        else:
            prefix = 64 if family == "ipv6" else 24
        dhcp = tuple((r.get("start", ""), r.get("end", "")) for r in ip.findall("dhcp/range"))
        out.append(IpRange(family, addr, prefix, dhcp))
    return tuple(out)


def parse_network(root: ET.Element, **state) -> NetworkInfo:
    """Network XML → NetworkInfo; `state` gives what the API knows (active, autostart,
    persistent, vms)."""
    fwd = root.find("forward")
    mode = fwd.get("mode", "nat") if fwd is not None else "isolated"
    return xmlmodel.read(NetworkInfo, root, forward_mode=mode, ips=_ip_ranges(root), **state)


def read_network(net: libvirt.virNetwork, usage: Usage | None = None) -> NetworkInfo:
    name = net.name()
    return parse_network(xmlmodel.parse(net.XMLDesc(0), "network"), active=bool(net.isActive()),
                         autostart=bool(net.autostart()), persistent=bool(net.isPersistent()),
                         vms=usage.on_network(name) if usage is not None else ())


def list_networks(target: Target, usage: Usage | None = None) -> list[NetworkInfo]:
    """Every libvirt network sorted by name (with its VMs when `usage` is given). Raises VirtError."""
    conn, manager = split(target)
    with calling(manager, "list networks"):
        return sorted((read_network(n, usage) for n in conn.listAllNetworks(0)), key=lambda n: n.name)


def networks_overview(target: Target) -> NetworksOverview:
    """Every libvirt network with its VMs, sorted by name; who uses what computed once.
    `usage.problems` names the VMs whose definition could not be read fully. Raises VirtError."""
    usage = inventory.usage(target)
    return NetworksOverview(tuple(list_networks(target, usage)), usage)


def _lookup(conn, manager, name: str) -> libvirt.virNetwork:
    if not name:
        raise ValidationError("no network given")
    net = find(manager, f"look up network {name}", lambda: conn.networkLookupByName(name), libvirt.VIR_ERR_NO_NETWORK)
    if net is None:
        raise ValidationError(f"no libvirt network named {name!r}")
    return net


def network_info(target: Target, name: str) -> NetworkInfo:
    """One network (with its VMs). Raises ValidationError (no such network), VirtError."""
    conn, manager = split(target)
    net = _lookup(conn, manager, name)
    usage = inventory.usage(target)
    with calling(manager, f"read network {name}"):
        return read_network(net, usage)


def network_users(target: Target, name: str) -> tuple[str, ...]:
    """VMs with a NIC on the network: what the delete/stop confirmation warns about."""
    conn, manager = split(target)
    _lookup(conn, manager, name)
    return inventory.usage(target).on_network(name)


def dhcp_leases(target: Target, name: str) -> LeaseList:
    """Current DHCP leases. A driver without a lease database (the test driver) gives an empty
    list with supported=False, so the UI says "not available" rather than "none"."""
    conn, manager = split(target)
    net = _lookup(conn, manager, name)
    try:
        raw = net.DHCPLeases() or []
    except libvirt.libvirtError as exc:
        if manager is not None:
            manager.check_error(exc)
        if verrors.is_no_support(exc):
            return LeaseList(name, (), False, verrors.one_line(exc))
        raise VirtError.wrap(f"read DHCP leases of {name}", exc) from exc
    leases = [Lease(mac=(d.get("mac") or "").lower(), ip=f"{d.get('ipaddr', '')}/{d.get('prefix', '')}",
                    hostname=d.get("hostname") or "", expires=int(d.get("expirytime") or 0),
                    client_id=d.get("clientid") or "") for d in raw]
    return LeaseList(name, tuple(sorted(leases, key=lambda l: (l.ip, l.mac))), True)


# --------------------------------------------------------------------------- simple operations


def _simple(target: Target, name: str, verb: str, call) -> None:
    conn, manager = split(target)
    net = _lookup(conn, manager, name)
    with calling(manager, f"{verb} network {name}"):
        call(net)


def start_network(target: Target, name: str) -> None:
    """Raises ValidationError (unknown network), VirtError."""
    _simple(target, name, "start", lambda n: n.create())


def stop_network(target: Target, name: str) -> None:
    """virNetworkDestroy: running VMs on it lose connectivity (the UI asks first).
    A transient network disappears. Raises ValidationError, VirtError."""
    _simple(target, name, "stop", lambda n: n.destroy())


def set_network_autostart(target: Target, name: str, on: bool) -> None:
    """Raises ValidationError (unknown or transient network), VirtError."""
    conn, manager = split(target)
    net = _lookup(conn, manager, name)
    with calling(manager, f"read network {name}"):
        persistent = net.isPersistent()
    if not persistent:
        raise ValidationError(f"network {name!r} is transient; only defined networks can autostart")
    with calling(manager, f"set autostart of network {name}"):
        net.setAutostart(1 if on else 0)


# --------------------------------------------------------------------------- validation


def parse_gateway(text: str) -> ipaddress.IPv4Interface:
    """A libvirt network's gateway "address/prefix" (a network address means its first host);
    IPv4, with room for a gateway and guests (/30 or larger)."""
    return names.cidr(text, names.Role.GATEWAY, family=4, max_prefix=30)  # type: ignore[return-value]


def validate_dhcp_range(gateway: ipaddress.IPv4Interface, start: str, end: str) -> tuple[str, str]:
    """Both ends inside the subnet, start ≤ end, neither the network nor the broadcast address,
    and the gateway not inside the range (dnsmasq would hand it out to nobody)."""
    net = gateway.network
    addrs = []
    for label, text in (("start", start), ("end", end)):
        try:
            addr = ipaddress.IPv4Address(str(text).strip())
        except ValueError as exc:
            raise ValidationError(f"DHCP range {label} {text!r} is not an IPv4 address") from exc
        if addr not in net:
            raise ValidationError(f"DHCP range {label} {addr} is outside {net}")
        if addr == net.network_address:
            raise ValidationError(f"DHCP range {label} {addr} is the network address of {net}")
        if addr == net.broadcast_address:
            raise ValidationError(f"DHCP range {label} {addr} is the broadcast address of {net}")
        if addr == gateway.ip:
            raise ValidationError(f"DHCP range {label} {addr} is the gateway address")
        addrs.append(addr)
    if addrs[0] > addrs[1]:
        raise ValidationError(f"DHCP range start {addrs[0]} is after its end {addrs[1]}")
    if addrs[0] < gateway.ip < addrs[1]:
        raise ValidationError(f"DHCP range {addrs[0]}-{addrs[1]} includes the gateway {gateway.ip}")
    return str(addrs[0]), str(addrs[1])


def validate_network_spec(spec: NewNetworkSpec) -> None:
    """Everything that can be checked without the host. Raises ValidationError."""
    names.network_name(spec.name)
    if spec.mode not in MODES:
        raise ValidationError(f"network mode must be one of {', '.join(MODES)}, not {spec.mode!r}")
    has_dhcp = spec.dhcp_start is not None or spec.dhcp_end is not None
    if has_dhcp and (not spec.dhcp_start or not spec.dhcp_end):
        raise ValidationError("a DHCP range needs both a start and an end address")
    if spec.mode == "bridge":
        if not spec.bridge:
            raise ValidationError("a bridged network needs the name of an existing host bridge")
        names.interface_name(spec.bridge, "host bridge")
        if spec.cidr or has_dhcp:
            raise ValidationError("a bridged network has no address or DHCP range of its own",
                                  hint="the LAN's DHCP serves VMs on a host bridge")
        if spec.forward_dev:
            raise ValidationError("a bridged network has no forward device; it uses the bridge")
        return
    if spec.bridge:
        names.interface_name(spec.bridge, "bridge name")
    if spec.forward_dev:
        if spec.mode == "isolated":
            raise ValidationError("an isolated network forwards nowhere; leave the forward device empty")
        names.interface_name(spec.forward_dev, "forward device")
    if spec.mode in ("nat", "route") and not spec.cidr:
        raise ValidationError(f"a {spec.mode} network needs an IPv4 address with prefix, e.g. 192.168.100.1/24")
    if has_dhcp and not spec.cidr:
        raise ValidationError("a DHCP range needs the network's IPv4 address and prefix")
    if spec.cidr:
        gw = parse_gateway(spec.cidr)
        if has_dhcp:
            validate_dhcp_range(gw, spec.dhcp_start or "", spec.dhcp_end or "")


# --------------------------------------------------------------------------- XML


@dataclass(frozen=True)
class _NetworkXml:
    """The network XML a NewNetworkSpec becomes, in libvirt's element order."""

    name: str = xml("./name")
    forward_mode: str = xml("./forward/@mode")
    forward_dev: str = xml("./forward/@dev")
    nat_port_start: str = xml("./forward/nat/port/@start")
    nat_port_end: str = xml("./forward/nat/port/@end")
    bridge: str = xml("./bridge/@name")
    stp: str = xml("./bridge/@stp")
    delay: str = xml("./bridge/@delay")
    address: str = xml("./ip/@address")
    prefix: str = xml("./ip/@prefix")
    dhcp_start: str = xml("./ip/dhcp/range/@start")
    dhcp_end: str = xml("./ip/dhcp/range/@end")


def build_network_xml(spec: NewNetworkSpec) -> str:
    """Deterministic network XML for a validated spec (no UUID or MAC: libvirt generates them)."""
    if spec.mode == "bridge":
        return xmlmodel.build(_NetworkXml(spec.name, "bridge", bridge=spec.bridge), "network")
    model = _NetworkXml(spec.name, bridge=spec.bridge, stp="on", delay="0")
    if spec.mode in ("nat", "route"):
        model = replace(model, forward_mode=spec.mode, forward_dev=spec.forward_dev)
    if spec.mode == "nat":
        # libvirt's own default NAT port range, written out so the XML says what happens.
        model = replace(model, nat_port_start="1024", nat_port_end="65535")
    if spec.cidr:
        gw = parse_gateway(spec.cidr)
        model = replace(model, address=str(gw.ip), prefix=str(gw.network.prefixlen))
        if spec.dhcp_start and spec.dhcp_end:
            model = replace(model, dhcp_start=spec.dhcp_start.strip(), dhcp_end=spec.dhcp_end.strip())
    return xmlmodel.build(model, "network")


# --------------------------------------------------------------------------- create / delete


def _name_free(conn, manager, name: str) -> None:
    if find(manager, f"check network name {name}", lambda: conn.networkLookupByName(name),
            libvirt.VIR_ERR_NO_NETWORK) is not None:
        raise ValidationError(f"a libvirt network named {name!r} already exists")


def _is_local(uri: str) -> bool:
    parts = urlsplit(uri)
    return not parts.hostname


def _host_bridge_state(conn, manager, name: str) -> str | None:
    """'bridge', 'other' (exists, not a bridge), 'missing', or None when it cannot be told
    (remote host without an interface driver)."""
    uri = conn.getURI()
    if _is_local(uri) and not uri.startswith("test:"):
        # Local host: /sys is the truth (libvirt's udev interface backend may not be running).
        if os.path.isdir(f"/sys/class/net/{name}/bridge"):
            return "bridge"
        return "other" if os.path.exists(f"/sys/class/net/{name}") else "missing"
    try:
        iface = conn.interfaceLookupByName(name)
        kind = xmlmodel.parse(iface.XMLDesc(0), "interface").get("type", "")
    except libvirt.libvirtError as exc:
        if manager is not None:
            manager.check_error(exc)
        if verrors.code(exc) == libvirt.VIR_ERR_NO_INTERFACE:
            return "missing"
        log.debug("host bridge %s not checked: %s", name, verrors.one_line(exc))
        return None
    return "bridge" if kind == "bridge" else "other"


def check_host_bridge(conn, manager, name: str) -> None:
    """Refuse a host bridge that does not exist or is another kind of interface (what a network
    bridged onto it, or a VM's NIC of type bridge, would fail on at start); unknowable: accepted."""
    state = _host_bridge_state(conn, manager, name)
    if state == "missing":
        raise ValidationError(f"no host bridge named {name!r}", hint="create it in the host bridges pane first")
    if state == "other":
        raise ValidationError(f"host interface {name!r} is not a bridge", hint="bridge it in the host bridges pane first")


def validate_network(target: Target, spec: NewNetworkSpec) -> None:
    """validate_network_spec + host checks: name free, host bridge exists (bridge mode), the
    virbr name and the subnet not taken by another libvirt network. Reads only."""
    validate_network_spec(spec)
    conn, manager = split(target)
    _name_free(conn, manager, spec.name)
    if spec.mode == "bridge":
        check_host_bridge(conn, manager, spec.bridge)
        return
    if not (spec.bridge or spec.cidr):
        return
    with calling(manager, "list networks"):
        others = [read_network(n) for n in conn.listAllNetworks(0)]
    for other in others:
        if spec.bridge and other.bridge == spec.bridge:
            raise ValidationError(f"bridge {spec.bridge!r} already belongs to network {other.name!r}")
    if spec.cidr:
        mine = parse_gateway(spec.cidr).network
        for subnet, name in ((ipaddress.IPv4Interface(ip.cidr).network, other.name)
                             for other in others for ip in other.ips if ip.family == "ipv4"):
            if subnet.overlaps(mine):
                raise ValidationError(f"{mine} overlaps {subnet} of network {name!r}")


def create_network(target: Target, spec: NewNetworkSpec, *, start: bool = True,
                   autostart: bool = False) -> NetworkCreateResult:
    """Validate, define, then optionally set autostart and start. If autostart or start fails the
    definition is removed again (nothing half-made is left) and VirtError says so.
    Raises ValidationError, VirtError."""
    validate_network(target, spec)
    conn, manager = split(target)
    xml = build_network_xml(spec)
    with calling(manager, f"define network {spec.name}"):
        net = conn.networkDefineXML(xml)
    try:
        with calling(manager, f"network {spec.name} was not created"):
            if autostart:
                net.setAutostart(1)
            if start:
                net.create()
            uuid = net.UUIDString()
    except VirtError:
        try:
            if net.isActive():
                net.destroy()
            net.undefine()
        except libvirt.libvirtError as exc:
            log.error("could not remove half-created network %s: %s", spec.name, verrors.one_line(exc))
        raise
    return NetworkCreateResult(spec.name, uuid, start, autostart, xml)


def delete_network(target: Target, name: str) -> NetworkDeleteResult:
    """Stop (destroy) and undefine. The UI asks first, showing `network_users`; the result
    repeats them. Raises ValidationError (no such network), VirtError."""
    conn, manager = split(target)
    net = _lookup(conn, manager, name)
    vms = inventory.usage(target).on_network(name)
    with calling(manager, f"delete network {name}"):
        active = bool(net.isActive())
        persistent = bool(net.isPersistent())
        if active:
            net.destroy()
        if persistent:
            net.undefine()
    return NetworkDeleteResult(name, active, persistent, vms)


# --------------------------------------------------------------------------- DHCP range edit


def _range_xml(start: str, end: str) -> str:
    return ET.tostring(ET.Element("range", start=start, end=end), encoding="unicode")


def _ipv4_index(root: ET.Element) -> tuple[int, ET.Element]:
    for index, ip in enumerate(root.findall("ip")):
        addr = ip.get("address", "")
        if ip.get("family", "ipv4") == "ipv4" and addr and ":" not in addr:
            return index, ip
    raise ValidationError(f"network {root.findtext('name')!r} has no IPv4 address, so no DHCP range")


def set_dhcp_range(target: Target, name: str, start: str, end: str) -> DhcpEditResult:
    """Replace the first IPv4 DHCP range of a network.

    With virNetworkUpdate (libvirt refuses MODIFY for ranges, so: DELETE old + ADD new; if ADD
    fails the old range is put back): the definition is updated, and the running network too
    when active (libvirt restarts its dnsmasq). Where the driver has no networkUpdate, the
    definition is rewritten with networkDefineXML and the running network keeps the old range
    until it is restarted (reported, not hidden). Raises ValidationError, VirtError."""
    conn, manager = split(target)
    net = _lookup(conn, manager, name)
    with calling(manager, f"read network {name}"):
        active = bool(net.isActive())
        persistent = bool(net.isPersistent())
        try:
            xml = net.XMLDesc(_XML_INACTIVE) if persistent else net.XMLDesc(0)
        except libvirt.libvirtError as exc:
            if not verrors.is_no_support(exc) and verrors.code(exc) != libvirt.VIR_ERR_INVALID_ARG:
                raise
            xml = net.XMLDesc(0)  # test driver: no INACTIVE flag; its live and config XML agree
    root = xmlmodel.parse(xml, "network")
    if root.find("forward") is not None and root.find("forward").get("mode") == "bridge":
        raise ValidationError(f"network {name!r} is bridged onto a host bridge; it has no DHCP range here")
    index, ip_el = _ipv4_index(root)
    gw = parse_gateway(f"{ip_el.get('address')}/{_ip_ranges(root)[index].prefix}")
    new = validate_dhcp_range(gw, start, end)
    ranges = ip_el.findall("dhcp/range")
    old = (ranges[0].get("start", ""), ranges[0].get("end", "")) if ranges else None
    if old == new:
        raise ValidationError(f"network {name!r} already uses the DHCP range {new[0]}-{new[1]}")

    flags = (_AFFECT_CONFIG if persistent else 0) | (_AFFECT_LIVE if active else 0)
    try:
        if flags:
            _update_range(net, index, old, new, flags)
            return DhcpEditResult(name, old, new, "update", persistent, active,
                                  "" if active else "network is not running")
    except libvirt.libvirtError as exc:
        if manager is not None:
            manager.check_error(exc)
        if not verrors.is_no_support(exc):
            raise VirtError.wrap(f"set DHCP range of {name}", exc) from exc
        log.info("networkUpdate not supported for %s, redefining: %s", name, verrors.one_line(exc))
    if not persistent:
        raise ValidationError(f"network {name!r} is transient and this host cannot update it live")
    # Redefine fallback: change the model, define; the running instance is untouched.
    dhcp = ip_el.find("dhcp")
    if dhcp is None:
        dhcp = ET.SubElement(ip_el, "dhcp")
    first = ranges[0] if ranges else ET.SubElement(dhcp, "range")
    first.set("start", new[0])
    first.set("end", new[1])
    with calling(manager, f"save DHCP range of {name}"):
        conn.networkDefineXML(ET.tostring(root, encoding="unicode"))
    reason = "restart the network to use it" if active else "network is not running"
    return DhcpEditResult(name, old, new, "redefine", True, False, reason)


def _update_range(net, index: int, old: tuple[str, str] | None, new: tuple[str, str], flags: int) -> None:
    section = libvirt.VIR_NETWORK_SECTION_IP_DHCP_RANGE
    if old is not None:
        net.update(libvirt.VIR_NETWORK_UPDATE_COMMAND_DELETE, section, index, _range_xml(*old), flags)
    try:
        # ADD_FIRST: the edited range stays the first one, as the UI shows it.
        net.update(libvirt.VIR_NETWORK_UPDATE_COMMAND_ADD_FIRST, section, index, _range_xml(*new), flags)
    except libvirt.libvirtError:
        if old is not None:
            try:
                net.update(libvirt.VIR_NETWORK_UPDATE_COMMAND_ADD_FIRST, section, index, _range_xml(*old), flags)
            except libvirt.libvirtError as exc:
                log.error("could not restore DHCP range %s-%s of %s: %s", *old, net.name(), verrors.one_line(exc))
        raise
