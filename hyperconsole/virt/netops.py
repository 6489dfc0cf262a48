"""libvirt networks: details, DHCP leases, which VMs sit on them, and their operations.

Host bridges and VLANs (NixOS fragments) are not here; this module only talks to libvirt.
Contract, as in ops.py: bad input raises `ValidationError` before any mutating libvirt call;
a libvirt failure raises `VirtError` (one line) after `manager.check_error`; results are
frozen dataclasses, never libvirt objects. Called from thread workers, never the poll path.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import unicodedata
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import libvirt

from hyperconsole.errors import ValidationError
from hyperconsole.virt import errors as verrors
from hyperconsole.virt.errors import VirtError
from hyperconsole.virt.inventory import Target, domain_definitions, find, split
from hyperconsole.virt.ops import _calling, validate_name

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
class NetworkDetails:
    name: str
    uuid: str
    active: bool
    autostart: bool
    persistent: bool
    forward_mode: str  # nat, route, open, bridge, … or "isolated" (no <forward>)
    bridge: str  # virbrN for nat/route/isolated, the host bridge for mode bridge
    forward_dev: str = ""
    ips: tuple[IpRange, ...] = ()
    vms: tuple[str, ...] = ()  # names of VMs with a NIC on this network (inactive or live XML)


@dataclass(frozen=True)
class NicUsage:
    """Who has a NIC where, from ONE pass over every domain's inactive (and live) XML."""

    by_network: dict[str, tuple[str, ...]] = field(default_factory=dict)
    by_bridge: dict[str, tuple[str, ...]] = field(default_factory=dict)  # type='bridge' NICs and live taps

    def on_network(self, name: str) -> tuple[str, ...]:
        return self.by_network.get(name, ())

    def on_bridge(self, bridge: str, networks: tuple[NetworkDetails, ...] | list[NetworkDetails] = ()) -> tuple[str, ...]:
        """VMs on a host bridge: NICs of type bridge, plus VMs on libvirt networks whose bridge it is
        (a `forward mode='bridge'` network onto br0, or a virbrN)."""
        names = set(self.by_bridge.get(bridge, ()))
        for net in networks:
            if net.bridge == bridge:
                names.update(self.on_network(net.name))
        return tuple(sorted(names))


@dataclass(frozen=True)
class NetworksOverview:
    networks: tuple[NetworkDetails, ...]
    usage: NicUsage


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


def parse_network_xml(xml: str, *, active: bool = False, autostart: bool = False, persistent: bool = True,
                      vms: tuple[str, ...] = ()) -> NetworkDetails:
    """Network XML → NetworkDetails (state flags come from the API, not the XML)."""
    root = ET.fromstring(xml)
    fwd = root.find("forward")
    mode = fwd.get("mode", "nat") if fwd is not None else "isolated"
    bridge_el = root.find("bridge")
    return NetworkDetails(
        name=root.findtext("name") or "", uuid=root.findtext("uuid") or "", active=active,
        autostart=autostart, persistent=persistent, forward_mode=mode,
        bridge=bridge_el.get("name", "") if bridge_el is not None else "",
        forward_dev=fwd.get("dev", "") if fwd is not None else "",
        ips=_ip_ranges(root), vms=vms,
    )


def _nics(root: ET.Element, name: str, by_network: dict[str, set[str]], by_bridge: dict[str, set[str]]) -> None:
    for nic in root.findall("devices/interface"):
        src = nic.find("source")
        if src is None:
            continue
        kind = nic.get("type", "")
        if kind == "network" and src.get("network"):
            by_network.setdefault(src.get("network", ""), set()).add(name)
        # Live XML of a type='network' NIC also names the bridge it was plugged into.
        if kind in ("bridge", "network") and src.get("bridge"):
            by_bridge.setdefault(src.get("bridge", ""), set()).add(name)


def nic_usage(target: Target) -> NicUsage:
    """Who has a NIC where, from one pass over every domain's definition. Raises VirtError."""
    by_network: dict[str, set[str]] = {}
    by_bridge: dict[str, set[str]] = {}
    for definition in domain_definitions(target):
        for root in definition.roots:
            _nics(root, definition.name, by_network, by_bridge)
    return NicUsage({k: tuple(sorted(v)) for k, v in by_network.items()},
                    {k: tuple(sorted(v)) for k, v in by_bridge.items()})


def _details(net: libvirt.virNetwork, usage: NicUsage) -> NetworkDetails:
    name = net.name()
    return parse_network_xml(net.XMLDesc(0), active=bool(net.isActive()), autostart=bool(net.autostart()),
                             persistent=bool(net.isPersistent()), vms=usage.on_network(name))


def networks_overview(target: Target) -> NetworksOverview:
    """Every libvirt network with details and its VMs, sorted by name; NIC usage computed once.
    Raises VirtError."""
    conn, manager = split(target)
    usage = nic_usage(target)
    with _calling(manager, "list networks"):
        nets = [_details(n, usage) for n in conn.listAllNetworks(0)]
    return NetworksOverview(tuple(sorted(nets, key=lambda n: n.name)), usage)


def _lookup(conn, manager, name: str) -> libvirt.virNetwork:
    if not name:
        raise ValidationError("no network given")
    net = find(manager, f"look up network {name}", lambda: conn.networkLookupByName(name), libvirt.VIR_ERR_NO_NETWORK)
    if net is None:
        raise ValidationError(f"no libvirt network named {name!r}")
    return net


def network_details(target: Target, name: str) -> NetworkDetails:
    """One network (with its VMs). Raises ValidationError (no such network), VirtError."""
    conn, manager = split(target)
    net = _lookup(conn, manager, name)
    usage = nic_usage(target)
    with _calling(manager, f"read network {name}"):
        return _details(net, usage)


def network_users(target: Target, name: str) -> tuple[str, ...]:
    """VMs with a NIC on the network: what the delete/stop confirmation warns about."""
    conn, manager = split(target)
    _lookup(conn, manager, name)
    return nic_usage(target).on_network(name)


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
    with _calling(manager, f"{verb} network {name}"):
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
    with _calling(manager, f"read network {name}"):
        persistent = net.isPersistent()
    if not persistent:
        raise ValidationError(f"network {name!r} is transient; only defined networks can autostart")
    with _calling(manager, f"set autostart of network {name}"):
        net.setAutostart(1 if on else 0)


# --------------------------------------------------------------------------- validation


def validate_bridge_name(name: str, what: str = "bridge name") -> str:
    """Linux interface names: 1-15 bytes, no '/', ':', whitespace or control characters."""
    if not isinstance(name, str) or not name:
        raise ValidationError(f"{what} is empty")
    if len(name.encode()) > 15:
        raise ValidationError(f"{what} {name!r} is longer than 15 bytes")
    if name in (".", "..") or any(c in name for c in "/:") or any(
            c.isspace() or unicodedata.category(c).startswith("C") for c in name):
        raise ValidationError(f"{what} {name!r} may not contain '/', ':', spaces or control characters")
    return name


def parse_cidr(cidr: str) -> ipaddress.IPv4Interface:
    """IPv4 "address/prefix" → the gateway interface. A network address means its first host.
    Refuses: not IPv4, no prefix, prefix over 30 (no room for DHCP), the broadcast address."""
    if not isinstance(cidr, str) or "/" not in cidr:
        raise ValidationError(f"{cidr!r} is not an IPv4 address with prefix, e.g. 192.168.100.1/24")
    try:
        iface = ipaddress.ip_interface(cidr.strip())
    except ValueError as exc:
        raise ValidationError(f"{cidr!r} is not an IPv4 address with prefix, e.g. 192.168.100.1/24") from exc
    if not isinstance(iface, ipaddress.IPv4Interface):
        raise ValidationError(f"{cidr!r} is IPv6; only IPv4 networks are created here")
    net = iface.network
    if net.prefixlen > 30:
        raise ValidationError(f"/{net.prefixlen} is too small for a network with a gateway and guests; use /30 or larger")
    if iface.ip == net.network_address:
        iface = ipaddress.IPv4Interface(f"{net.network_address + 1}/{net.prefixlen}")
    if iface.ip == net.broadcast_address:
        raise ValidationError(f"{iface.ip} is the broadcast address of {net}; the gateway must be a host address")
    return iface


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
    validate_name(spec.name, "network name")
    if spec.mode not in MODES:
        raise ValidationError(f"network mode must be one of {', '.join(MODES)}, not {spec.mode!r}")
    has_dhcp = spec.dhcp_start is not None or spec.dhcp_end is not None
    if has_dhcp and (not spec.dhcp_start or not spec.dhcp_end):
        raise ValidationError("a DHCP range needs both a start and an end address")
    if spec.mode == "bridge":
        if not spec.bridge:
            raise ValidationError("a bridged network needs the name of an existing host bridge")
        validate_bridge_name(spec.bridge, "host bridge")
        if spec.cidr or has_dhcp:
            raise ValidationError("a bridged network has no address or DHCP range of its own",
                                  hint="the LAN's DHCP serves VMs on a host bridge")
        if spec.forward_dev:
            raise ValidationError("a bridged network has no forward device; it uses the bridge")
        return
    if spec.bridge:
        validate_bridge_name(spec.bridge)
    if spec.forward_dev:
        if spec.mode == "isolated":
            raise ValidationError("an isolated network forwards nowhere; leave the forward device empty")
        validate_bridge_name(spec.forward_dev, "forward device")
    if spec.mode in ("nat", "route") and not spec.cidr:
        raise ValidationError(f"a {spec.mode} network needs an IPv4 address with prefix, e.g. 192.168.100.1/24")
    if has_dhcp and not spec.cidr:
        raise ValidationError("a DHCP range needs the network's IPv4 address and prefix")
    if spec.cidr:
        gateway = parse_cidr(spec.cidr)
        if has_dhcp:
            validate_dhcp_range(gateway, spec.dhcp_start or "", spec.dhcp_end or "")


# --------------------------------------------------------------------------- XML


def _sub(parent: ET.Element, tag: str, **attrs: str) -> ET.Element:
    return ET.SubElement(parent, tag, attrs)


def build_network_xml(spec: NewNetworkSpec) -> str:
    """Deterministic network XML for a validated spec (fixed element order, ElementTree escaping;
    no UUID or MAC: libvirt generates them)."""
    net = ET.Element("network")
    ET.SubElement(net, "name").text = spec.name
    if spec.mode == "bridge":
        _sub(net, "forward", mode="bridge")
        _sub(net, "bridge", name=spec.bridge)
    else:
        if spec.mode in ("nat", "route"):
            fwd = _sub(net, "forward", mode=spec.mode, **({"dev": spec.forward_dev} if spec.forward_dev else {}))
            if spec.mode == "nat":
                # libvirt's own default NAT port range, written out so the XML says what happens.
                _sub(_sub(fwd, "nat"), "port", start="1024", end="65535")
        bridge_attrs = {"name": spec.bridge} if spec.bridge else {}
        _sub(net, "bridge", **bridge_attrs, stp="on", delay="0")
        if spec.cidr:
            gw = parse_cidr(spec.cidr)
            ip = _sub(net, "ip", address=str(gw.ip), prefix=str(gw.network.prefixlen))
            if spec.dhcp_start and spec.dhcp_end:
                _sub(_sub(ip, "dhcp"), "range", start=spec.dhcp_start.strip(), end=spec.dhcp_end.strip())
    ET.indent(net, space="  ")
    return ET.tostring(net, encoding="unicode") + "\n"


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
        kind = ET.fromstring(iface.XMLDesc(0)).get("type", "")
    except libvirt.libvirtError as exc:
        if manager is not None:
            manager.check_error(exc)
        if verrors.code(exc) == libvirt.VIR_ERR_NO_INTERFACE:
            return "missing"
        log.debug("host bridge %s not checked: %s", name, verrors.one_line(exc))
        return None
    return "bridge" if kind == "bridge" else "other"


def _bridges_in_use(conn, manager) -> dict[str, str]:
    with _calling(manager, "list networks"):
        out = {}
        for n in conn.listAllNetworks(0):
            br = ET.fromstring(n.XMLDesc(0)).find("bridge")
            if br is not None and br.get("name"):
                out[br.get("name", "")] = n.name()
        return out


def _subnets_in_use(conn, manager) -> dict[ipaddress.IPv4Network, str]:
    with _calling(manager, "list networks"):
        out = {}
        for n in conn.listAllNetworks(0):
            for ip in _ip_ranges(ET.fromstring(n.XMLDesc(0))):
                if ip.family == "ipv4":
                    out[ipaddress.IPv4Interface(ip.cidr).network] = n.name()
        return out


def validate_network(target: Target, spec: NewNetworkSpec) -> None:
    """validate_network_spec + host checks: name free, host bridge exists (bridge mode), the
    virbr name and the subnet not taken by another libvirt network. Reads only."""
    validate_network_spec(spec)
    conn, manager = split(target)
    _name_free(conn, manager, spec.name)
    if spec.mode == "bridge":
        state = _host_bridge_state(conn, manager, spec.bridge)
        if state == "missing":
            raise ValidationError(f"no host bridge named {spec.bridge!r}",
                                  hint="create it in the host bridges pane first")
        if state == "other":
            raise ValidationError(f"host interface {spec.bridge!r} is not a bridge",
                                  hint="bridge it in the host bridges pane first")
        return
    if spec.bridge:
        taken = _bridges_in_use(conn, manager)
        if spec.bridge in taken:
            raise ValidationError(f"bridge {spec.bridge!r} already belongs to network {taken[spec.bridge]!r}")
    if spec.cidr:
        mine = parse_cidr(spec.cidr).network
        for subnet, other in _subnets_in_use(conn, manager).items():
            if subnet.overlaps(mine):
                raise ValidationError(f"{mine} overlaps {subnet} of network {other!r}")


def create_network(target: Target, spec: NewNetworkSpec, *, start: bool = True,
                   autostart: bool = False) -> NetworkCreateResult:
    """Validate, define, then optionally set autostart and start. If autostart or start fails the
    definition is removed again (nothing half-made is left) and VirtError says so.
    Raises ValidationError, VirtError."""
    validate_network(target, spec)
    conn, manager = split(target)
    xml = build_network_xml(spec)
    with _calling(manager, f"define network {spec.name}"):
        net = conn.networkDefineXML(xml)
    try:
        with _calling(manager, f"network {spec.name} was not created"):
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
    vms = nic_usage(target).on_network(name)
    with _calling(manager, f"delete network {name}"):
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
    with _calling(manager, f"read network {name}"):
        active = bool(net.isActive())
        persistent = bool(net.isPersistent())
        try:
            xml = net.XMLDesc(_XML_INACTIVE) if persistent else net.XMLDesc(0)
        except libvirt.libvirtError as exc:
            if not verrors.is_no_support(exc) and verrors.code(exc) != libvirt.VIR_ERR_INVALID_ARG:
                raise
            xml = net.XMLDesc(0)  # test driver: no INACTIVE flag; its live and config XML agree
    root = ET.fromstring(xml)
    if root.find("forward") is not None and root.find("forward").get("mode") == "bridge":
        raise ValidationError(f"network {name!r} is bridged onto a host bridge; it has no DHCP range here")
    index, ip_el = _ipv4_index(root)
    gateway = parse_cidr(f"{ip_el.get('address')}/{_ip_ranges(root)[index].prefix}")
    new = validate_dhcp_range(gateway, start, end)
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
    if ranges:
        ranges[0].set("start", new[0])
        ranges[0].set("end", new[1])
    else:
        dhcp.insert(0, ET.Element("range", start=new[0], end=new[1]))
    with _calling(manager, f"save DHCP range of {name}"):
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
