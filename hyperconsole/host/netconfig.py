"""The host network fragment (`<nixos-dir>/hyperconsole/network.nix`): model, validation, edits,
rendering to standard NixOS options, read-back, and the impact preview of a change.

Options written (types as declared in nixpkgs nixos/modules/tasks/network-interfaces.nix and
services/networking/firewall.nix; tests/nix/test_network_fragment.py holds the same table):
  networking.bridges.<name>.{interfaces, rstp}
  networking.vlans.<name>.{id, interface}
  networking.interfaces.<name>.{useDHCP, ipv4.addresses, ipv6.addresses, mtu}
  networking.defaultGateway / defaultGateway6 = { address; interface; }
  networking.nameservers
  networking.firewall.interfaces.<name>.{allowedTCPPorts, allowedUDPPorts}

Every edit validates before it returns, so a refused change never reaches the FragmentStore and
nothing is written. Refusals are one-line ValidationErrors; things that may be fine (a member that
does not exist on this host yet) are returned as warnings.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from dataclasses import dataclass, field
from typing import Any, Collection, Iterable, Mapping, Sequence

from hyperconsole import names
from hyperconsole.errors import ValidationError
from hyperconsole.host.interfaces import Uplink
from hyperconsole.nixos.render import render_fragment
from hyperconsole.nixos.store import ChangeSet, Fragment, FragmentChange, FragmentStore

FRAGMENT_NAME = "network"
MTU_MIN = 68  # RFC 791 minimum; the kernel refuses less for IPv4
MTU_MIN_IPV6 = 1280  # RFC 8200: the kernel drops IPv6 from a device below this
VLAN_MIN, VLAN_MAX = 1, 4094  # 0 and 4095 are reserved by 802.1Q
PORT_MIN, PORT_MAX = 1, 65535


# -- model ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BridgeConfig:
    name: str
    interfaces: tuple[str, ...]
    rstp: bool = False


@dataclass(frozen=True)
class VlanConfig:
    name: str
    id: int
    parent: str


@dataclass(frozen=True)
class InterfaceConfig:
    """Per-interface settings. `dhcp` None leaves NixOS's default (DHCP when no static IPv4)."""

    name: str
    dhcp: bool | None = None
    ipv4: tuple[str, ...] = ()  # CIDR strings, normalised ("10.0.0.2/24")
    ipv6: tuple[str, ...] = ()
    mtu: int | None = None
    tcp_ports: tuple[int, ...] = ()
    udp_ports: tuple[int, ...] = ()

    @property
    def is_empty(self) -> bool:
        return self == InterfaceConfig(self.name)


@dataclass(frozen=True)
class Gateway:
    address: str
    interface: str | None = None


@dataclass(frozen=True)
class NetworkConfig:
    """What network.nix says; tuples sorted by name so equal configs render identically."""

    bridges: tuple[BridgeConfig, ...] = ()
    vlans: tuple[VlanConfig, ...] = ()
    interfaces: tuple[InterfaceConfig, ...] = ()
    gateway4: Gateway | None = None
    gateway6: Gateway | None = None
    nameservers: tuple[str, ...] = ()

    def bridge(self, name: str) -> BridgeConfig | None:
        return next((b for b in self.bridges if b.name == name), None)

    def vlan(self, name: str) -> VlanConfig | None:
        return next((v for v in self.vlans if v.name == name), None)

    def interface(self, name: str) -> InterfaceConfig:
        return next((i for i in self.interfaces if i.name == name), InterfaceConfig(name))

    def declared_names(self) -> set[str]:
        """Interfaces this fragment itself creates (bridges and VLANs)."""
        return {b.name for b in self.bridges} | {v.name for v in self.vlans}

    def _with(self, **changes: Any) -> "NetworkConfig":
        for key in ("bridges", "vlans", "interfaces"):
            if key in changes:
                items = changes[key]
                if key == "interfaces":
                    items = [i for i in items if not i.is_empty]  # nothing set: no entry
                changes[key] = tuple(sorted(items, key=lambda item: item.name))
        return dataclasses.replace(self, **changes)

    def with_interface(self, new: InterfaceConfig) -> "NetworkConfig":
        return self._with(interfaces=[i for i in self.interfaces if i.name != new.name] + [new])


@dataclass(frozen=True)
class NetworkChange:
    """An edit, before it is written: old and new config plus what it touches (for the impact)."""

    description: str
    before: NetworkConfig
    after: NetworkConfig
    touched: frozenset[str]  # interface names whose configuration this change alters
    bridges: frozenset[str] = frozenset()  # bridges created, removed or re-membered
    warnings: tuple[str, ...] = ()
    stranded: tuple[str, ...] = ()  # new bridge members whose addressing is lost unless moved


@dataclass(frozen=True)
class Impact:
    bridges_changed: list[str]
    vms_on_them: list[str]
    uplinks_touched: list[str]  # the uplink's interfaces this change reaches (all touched ones when unknown)
    warnings: list[str] = field(default_factory=list)

    @property
    def touches_uplink(self) -> bool:
        return bool(self.uplinks_touched)


# -- validation of single values ------------------------------------------------------------------


def _whole(value: object, what: str, low: int, high: int) -> int:
    """An int of the model (already parsed; text is names.whole_number's job) within low..high."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValidationError(f"{what} must be a whole number from {low} to {high}, not {value!r}")
    return value


def check_vlan_id(value: object) -> int:
    return _whole(value, "VLAN id", VLAN_MIN, VLAN_MAX)


def check_mtu(value: object, *, ipv6: bool = False) -> int:
    value = _whole(value, "MTU", MTU_MIN, 65535)
    if ipv6 and value < MTU_MIN_IPV6:
        raise ValidationError(f"MTU {value} is below {MTU_MIN_IPV6}, the minimum for an interface with IPv6 addresses")
    return value


def check_port(value: object) -> int:
    return _whole(value, "port", PORT_MIN, PORT_MAX)


def host_cidr(text: object) -> ipaddress.IPv4Interface | ipaddress.IPv6Interface:
    """An interface's own address with its prefix length ("192.0.2.10/24", "2001:db8::2/64")."""
    return names.cidr(text, names.Role.HOST)


def parse_ip(text: object, what: str = "gateway") -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    try:
        return ipaddress.ip_address(str(text).strip())
    except ValueError:
        raise ValidationError(f"{what} {str(text)[:60]!r} is not a valid IP address") from None


def check_gateway(gateway: object, address: ipaddress.IPv4Interface | ipaddress.IPv6Interface) -> str:
    gw = parse_ip(gateway)
    if gw.version != address.version:
        raise ValidationError(f"gateway {gw} is IPv{gw.version} but the address {address} is IPv{address.version}")
    if gw not in address.network:
        raise ValidationError(f"gateway {gw} is not inside {address.network}, the subnet of {address}")
    if gw == address.ip:
        raise ValidationError(f"gateway {gw} is the interface's own address")
    net = address.network
    if gw.version == 4 and net.prefixlen < 31 and gw in (net.network_address, net.broadcast_address):
        raise ValidationError(f"gateway {gw} is the network or broadcast address of {net}")
    return str(gw)


# -- validation of a whole config -----------------------------------------------------------------


def validate(config: NetworkConfig, existing: Collection[str] | None = None) -> list[str]:
    """Raise ValidationError on anything NixOS or the kernel would refuse; return warnings.

    `existing` are the interface names on this host (None: not known, no existence warnings)."""
    owner: dict[str, str] = {}
    for bridge in config.bridges:
        names.interface_name(bridge.name, "bridge name")
        for member in bridge.interfaces:
            names.interface_name(member, "bridge member")
            if member == bridge.name:
                raise ValidationError(f"bridge {bridge.name} cannot be a member of itself")
            if member in owner and owner[member] != bridge.name:
                raise ValidationError(f"{member} is already in bridge {owner[member]}; an interface can be in only one bridge")
            owner[member] = bridge.name
    for bridge in config.bridges:
        if bridge.name in owner:
            # Nested bridges: Linux refuses to enslave a bridge to another bridge (ELOOP).
            raise ValidationError(f"bridge {bridge.name} cannot be a member of bridge {owner[bridge.name]}")
    seen: dict[tuple[str, int], str] = {}
    for vlan in config.vlans:
        names.interface_name(vlan.name, "VLAN name")
        names.interface_name(vlan.parent, "VLAN parent")
        check_vlan_id(vlan.id)
        if vlan.parent == vlan.name:
            raise ValidationError(f"VLAN {vlan.name} cannot be its own parent")
        key = (vlan.parent, vlan.id)
        if key in seen:
            raise ValidationError(f"VLAN id {vlan.id} on {vlan.parent} is already used by {seen[key]}")
        seen[key] = vlan.name
        if config.bridge(vlan.name):
            raise ValidationError(f"{vlan.name} is both a bridge and a VLAN")
    for iface in config.interfaces:
        names.interface_name(iface.name)
        for text in iface.ipv4 + iface.ipv6:
            host_cidr(text)
        if iface.mtu is not None:
            check_mtu(iface.mtu, ipv6=bool(iface.ipv6))
        for port in iface.tcp_ports + iface.udp_ports:
            check_port(port)
        if iface.dhcp and iface.ipv4:
            raise ValidationError(f"{iface.name} cannot use DHCP and static IPv4 addresses at once")
    for gw, version in ((config.gateway4, 4), (config.gateway6, 6)):
        if gw is None:
            continue
        ip = parse_ip(gw.address)
        if ip.version != version:
            raise ValidationError(f"default gateway {ip} is not IPv{version}")
        if gw.interface is not None:
            names.interface_name(gw.interface, "gateway interface")
            iface = config.interface(gw.interface)
            nets = [host_cidr(a) for a in (iface.ipv4 if version == 4 else iface.ipv6)]
            if nets and not any(ip in n.network for n in nets):
                raise ValidationError(f"gateway {ip} is not inside any subnet of {gw.interface}")
    for server in config.nameservers:
        parse_ip(server, "nameserver")

    warnings: list[str] = []
    if existing is not None:
        known = set(existing) | config.declared_names()
        referenced: list[tuple[str, str]] = []
        for bridge in config.bridges:
            referenced += [(m, f"bridge {bridge.name} member") for m in bridge.interfaces]
        referenced += [(v.parent, f"VLAN {v.name} parent") for v in config.vlans]
        referenced += [(i.name, "configured interface") for i in config.interfaces]
        for name, role in referenced:
            if name not in known:
                warnings.append(f"{role} {name} does not exist on this host (yet)")
    return list(dict.fromkeys(warnings))


# -- edits: each returns a validated NetworkChange -------------------------------------------------


def _finish(description: str, before: NetworkConfig, after: NetworkConfig, touched: Iterable[str],
            bridges: Iterable[str] = (), existing: Collection[str] | None = None) -> NetworkChange:
    warnings = validate(after, existing)
    return NetworkChange(description, before, after, frozenset(touched), frozenset(bridges), tuple(warnings))


def add_bridge(config: NetworkConfig, name: str, members: Sequence[str], *, rstp: bool = False,
               existing: Collection[str] | None = None) -> NetworkChange:
    names.interface_name(name, "bridge name")
    for member in members:
        names.interface_name(member, "bridge member")
    if config.bridge(name):
        raise ValidationError(f"bridge {name} already exists in network.nix", hint="remove it first to change it")
    if config.vlan(name):
        raise ValidationError(f"{name} is already a VLAN in network.nix")
    if len(set(members)) != len(members):
        raise ValidationError(f"bridge {name} lists a member twice")
    after = config._with(bridges=[*config.bridges, BridgeConfig(name, tuple(sorted(members)), rstp)])
    return _finish(f"add bridge {name}", config, after, [name, *members], [name], existing)


def remove_bridge(config: NetworkConfig, name: str, *, existing: Collection[str] | None = None) -> NetworkChange:
    names.interface_name(name, "bridge name")
    bridge = config.bridge(name)
    if bridge is None:
        raise ValidationError(f"there is no bridge {name} in network.nix")
    users = [v.name for v in config.vlans if v.parent == name]
    if users:
        raise ValidationError(f"bridge {name} is the parent of VLAN {', '.join(users)}", hint="remove the VLAN first")
    after = config._with(bridges=[b for b in config.bridges if b.name != name],
                         interfaces=[i for i in config.interfaces if i.name != name])
    if after.gateway4 and after.gateway4.interface == name:
        after = dataclasses.replace(after, gateway4=None)
    if after.gateway6 and after.gateway6.interface == name:
        after = dataclasses.replace(after, gateway6=None)
    return _finish(f"remove bridge {name}", config, after, [name, *bridge.interfaces], [name], existing)


def add_vlan(config: NetworkConfig, name: str, vlan_id: int, parent: str, *,
             existing: Collection[str] | None = None) -> NetworkChange:
    names.interface_name(name, "VLAN name")
    names.interface_name(parent, "VLAN parent")
    check_vlan_id(vlan_id)
    if config.vlan(name) or config.bridge(name):
        raise ValidationError(f"{name} already exists in network.nix", hint="remove it first to change it")
    after = config._with(vlans=[*config.vlans, VlanConfig(name, vlan_id, parent)])
    # The parent is touched too: NixOS restarts the parent's device units to attach the VLAN.
    return _finish(f"add VLAN {name} (id {vlan_id} on {parent})", config, after, [name, parent], (), existing)


def remove_vlan(config: NetworkConfig, name: str, *, existing: Collection[str] | None = None) -> NetworkChange:
    names.interface_name(name, "VLAN name")
    vlan = config.vlan(name)
    if vlan is None:
        raise ValidationError(f"there is no VLAN {name} in network.nix")
    holders = [b.name for b in config.bridges if name in b.interfaces]
    if holders:
        raise ValidationError(f"VLAN {name} is a member of bridge {holders[0]}", hint="remove it from the bridge first")
    after = config._with(vlans=[v for v in config.vlans if v.name != name],
                         interfaces=[i for i in config.interfaces if i.name != name])
    return _finish(f"remove VLAN {name}", config, after, [name, vlan.parent], (), existing)


def set_address(config: NetworkConfig, iface: str, *, dhcp: bool = False, address: str | None = None,
                gateway: str | None = None, existing: Collection[str] | None = None) -> NetworkChange:
    """DHCP, or one static address (replacing the others of its family) with an optional default
    gateway, which must lie in that address's subnet."""
    names.interface_name(iface)
    current = config.interface(iface)
    if dhcp == (address is not None):
        raise ValidationError("give either DHCP or a static address")
    if dhcp:
        if gateway is not None:
            raise ValidationError("a gateway cannot be set with DHCP (DHCP provides it)")
        new = dataclasses.replace(current, dhcp=True, ipv4=())
        after = config.with_interface(new)
        if after.gateway4 and after.gateway4.interface == iface:
            after = dataclasses.replace(after, gateway4=None)
        return _finish(f"DHCP on {iface}", config, after, [iface], (), existing)
    parsed = host_cidr(address)
    gw = check_gateway(gateway, parsed) if gateway is not None else None
    text = f"{parsed.ip}/{parsed.network.prefixlen}"
    if parsed.version == 4:
        new = dataclasses.replace(current, dhcp=False, ipv4=(text,))
    else:
        new = dataclasses.replace(current, ipv6=(text,))
        if new.mtu is not None and new.mtu < MTU_MIN_IPV6:
            raise ValidationError(f"{iface} has MTU {new.mtu}, below {MTU_MIN_IPV6} which IPv6 needs", hint="raise the MTU first")
    after = config.with_interface(new)
    if gw is not None:
        field_name = "gateway4" if parsed.version == 4 else "gateway6"
        after = dataclasses.replace(after, **{field_name: Gateway(gw, iface)})
    desc = f"address {text} on {iface}" + (f" via {gw}" if gw else "")
    return _finish(desc, config, after, [iface], (), existing)


def set_mtu(config: NetworkConfig, iface: str, mtu: int | None, *, existing: Collection[str] | None = None) -> NetworkChange:
    names.interface_name(iface)
    current = config.interface(iface)
    if mtu is not None:
        check_mtu(mtu, ipv6=bool(current.ipv6))
    after = config.with_interface(dataclasses.replace(current, mtu=mtu))
    return _finish(f"MTU {mtu if mtu is not None else 'default'} on {iface}", config, after, [iface], (), existing)


def set_firewall_ports(config: NetworkConfig, iface: str, *, tcp: Sequence[int] = (), udp: Sequence[int] = (),
                       existing: Collection[str] | None = None) -> NetworkChange:
    names.interface_name(iface)
    for port in [*tcp, *udp]:
        check_port(port)
    current = config.interface(iface)
    new = dataclasses.replace(current, tcp_ports=tuple(sorted(set(tcp))), udp_ports=tuple(sorted(set(udp))))
    return _finish(f"firewall ports on {iface}", config, config.with_interface(new), [iface], (), existing)


def change_firewall_ports(config: NetworkConfig, iface: str, *, open_tcp: Sequence[int] = (), open_udp: Sequence[int] = (),
                          close_tcp: Sequence[int] = (), close_udp: Sequence[int] = (),
                          existing: Collection[str] | None = None) -> NetworkChange:
    """Open and close ports relative to what network.nix opens on `iface` now; closing a port it
    does not open is refused (a typo would otherwise pass as done)."""
    current = config.interface(names.interface_name(iface))
    if not (open_tcp or open_udp or close_tcp or close_udp):
        raise ValidationError("name ports to open or close")
    result = {}
    for proto, now, opening, closing in (("tcp", current.tcp_ports, open_tcp, close_tcp),
                                         ("udp", current.udp_ports, open_udp, close_udp)):
        both = sorted(set(opening) & set(closing))
        if both:
            raise ValidationError(f"port {both[0]}/{proto} is both opened and closed")
        missing = sorted(set(closing) - set(now))
        if missing:
            raise ValidationError(f"port {missing[0]}/{proto} is not open on {iface} in network.nix")
        result[proto] = (set(now) | set(opening)) - set(closing)
    return set_firewall_ports(config, iface, tcp=sorted(result["tcp"]), udp=sorted(result["udp"]), existing=existing)


def set_nameservers(config: NetworkConfig, servers: Sequence[str], *, existing: Collection[str] | None = None) -> NetworkChange:
    normalised = tuple(str(parse_ip(s, "nameserver")) for s in servers)
    after = dataclasses.replace(config, nameservers=tuple(dict.fromkeys(normalised)))
    # DNS servers change no interface, so nothing is touched for the impact preview.
    return _finish("nameservers", config, after, (), (), existing)


# -- rendering and reading back --------------------------------------------------------------------


def _address_list(cidrs: Sequence[str]) -> list[dict[str, Any]]:
    out = []
    for text in cidrs:
        parsed = ipaddress.ip_interface(text)
        out.append({"address": str(parsed.ip), "prefixLength": parsed.network.prefixlen})
    return out


def to_options(config: NetworkConfig) -> dict[str, Any]:
    """The NixOS option tree (only what is set, so an absent option keeps NixOS's default)."""
    net: dict[str, Any] = {}
    if config.bridges:
        net["bridges"] = {b.name: {"interfaces": list(b.interfaces), "rstp": b.rstp} for b in config.bridges}
    if config.vlans:
        net["vlans"] = {v.name: {"id": v.id, "interface": v.parent} for v in config.vlans}
    interfaces: dict[str, Any] = {}
    firewall: dict[str, Any] = {}
    for iface in config.interfaces:
        body: dict[str, Any] = {}
        if iface.dhcp is not None:
            body["useDHCP"] = iface.dhcp
        if iface.ipv4:
            body["ipv4"] = {"addresses": _address_list(iface.ipv4)}
        if iface.ipv6:
            body["ipv6"] = {"addresses": _address_list(iface.ipv6)}
        if iface.mtu is not None:
            body["mtu"] = iface.mtu
        if body:
            interfaces[iface.name] = body
        ports: dict[str, Any] = {}
        if iface.tcp_ports:
            ports["allowedTCPPorts"] = list(iface.tcp_ports)
        if iface.udp_ports:
            ports["allowedUDPPorts"] = list(iface.udp_ports)
        if ports:
            firewall[iface.name] = ports
    if interfaces:
        net["interfaces"] = interfaces
    if firewall:
        net["firewall"] = {"interfaces": firewall}
    for key, gw in (("defaultGateway", config.gateway4), ("defaultGateway6", config.gateway6)):
        if gw is not None:
            net[key] = {"address": gw.address, **({"interface": gw.interface} if gw.interface else {})}
    if config.nameservers:
        net["nameservers"] = list(config.nameservers)
    return {"networking": net} if net else {}


class _Reader:
    """Strict reading of what to_options writes; anything else in network.nix is named and refused
    so a hand edit is never silently dropped by the next write."""

    def __init__(self) -> None:
        self.where = "hyperconsole/network.nix"

    def fail(self, path: str, problem: str) -> ValidationError:
        return ValidationError(f"{self.where}: {path} {problem}", hint="fix it by hand or remove the file; hyperconsole will not overwrite it")

    def mapping(self, value: Any, path: str, allowed: Collection[str] | None = None) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(path, "must be an attribute set")
        if allowed is not None:
            unknown = sorted(set(value) - set(allowed))
            if unknown:
                raise self.fail(f"{path}.{unknown[0]}", "is not an option hyperconsole manages")
        return value

    def typed(self, value: Any, kind: type, path: str) -> Any:
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise self.fail(path, f"must be a {kind.__name__}")
        return value

    def str_list(self, value: Any, path: str) -> list[str]:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.fail(path, "must be a list of strings")
        return value

    def int_list(self, value: Any, path: str) -> list[int]:
        if not isinstance(value, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            raise self.fail(path, "must be a list of integers")
        return value

    def addresses(self, value: Any, path: str) -> tuple[str, ...]:
        if not isinstance(value, list):
            raise self.fail(path, "must be a list")
        out = []
        for n, item in enumerate(value):
            item = self.mapping(item, f"{path}[{n}]", {"address", "prefixLength"})
            address = self.typed(item.get("address"), str, f"{path}[{n}].address")
            prefix = self.typed(item.get("prefixLength"), int, f"{path}[{n}].prefixLength")
            out.append(f"{address}/{prefix}")
        return tuple(out)

    def gateway(self, value: Any, path: str) -> Gateway:
        if isinstance(value, str):  # NixOS accepts a bare string too
            return Gateway(value)
        value = self.mapping(value, path, {"address", "interface"})
        iface = value.get("interface")
        if iface is not None:
            self.typed(iface, str, f"{path}.interface")
        return Gateway(self.typed(value.get("address"), str, f"{path}.address"), iface)

    def read(self, value: Any) -> NetworkConfig:
        if value is None or value == {}:
            return NetworkConfig()
        top = self.mapping(value, "top level", {"networking"})
        net = self.mapping(top.get("networking", {}), "networking", {
            "bridges", "vlans", "interfaces", "firewall", "defaultGateway", "defaultGateway6", "nameservers",
        })
        bridges = []
        for name, body in self.mapping(net.get("bridges", {}), "networking.bridges").items():
            p = f"networking.bridges.{name}"
            body = self.mapping(body, p, {"interfaces", "rstp"})
            bridges.append(BridgeConfig(name, tuple(self.str_list(body.get("interfaces", []), f"{p}.interfaces")),
                                        self.typed(body.get("rstp", False), bool, f"{p}.rstp")))
        vlans = []
        for name, body in self.mapping(net.get("vlans", {}), "networking.vlans").items():
            p = f"networking.vlans.{name}"
            body = self.mapping(body, p, {"id", "interface"})
            vlans.append(VlanConfig(name, self.typed(body.get("id"), int, f"{p}.id"),
                                    self.typed(body.get("interface"), str, f"{p}.interface")))
        ifaces: dict[str, InterfaceConfig] = {}
        for name, body in self.mapping(net.get("interfaces", {}), "networking.interfaces").items():
            p = f"networking.interfaces.{name}"
            body = self.mapping(body, p, {"useDHCP", "ipv4", "ipv6", "mtu"})
            dhcp = body.get("useDHCP")
            mtu = body.get("mtu")
            ifaces[name] = InterfaceConfig(
                name,
                dhcp=None if dhcp is None else self.typed(dhcp, bool, f"{p}.useDHCP"),
                ipv4=self.addresses(self.mapping(body.get("ipv4", {}), f"{p}.ipv4", {"addresses"}).get("addresses", []), f"{p}.ipv4.addresses"),
                ipv6=self.addresses(self.mapping(body.get("ipv6", {}), f"{p}.ipv6", {"addresses"}).get("addresses", []), f"{p}.ipv6.addresses"),
                mtu=None if mtu is None else self.typed(mtu, int, f"{p}.mtu"),
            )
        firewall = self.mapping(net.get("firewall", {}), "networking.firewall", {"interfaces"})
        for name, body in self.mapping(firewall.get("interfaces", {}), "networking.firewall.interfaces").items():
            p = f"networking.firewall.interfaces.{name}"
            body = self.mapping(body, p, {"allowedTCPPorts", "allowedUDPPorts"})
            ifaces[name] = dataclasses.replace(
                ifaces.get(name, InterfaceConfig(name)),
                tcp_ports=tuple(self.int_list(body.get("allowedTCPPorts", []), f"{p}.allowedTCPPorts")),
                udp_ports=tuple(self.int_list(body.get("allowedUDPPorts", []), f"{p}.allowedUDPPorts")),
            )
        gw4 = self.gateway(net["defaultGateway"], "networking.defaultGateway") if "defaultGateway" in net else None
        gw6 = self.gateway(net["defaultGateway6"], "networking.defaultGateway6") if "defaultGateway6" in net else None
        servers = tuple(self.str_list(net.get("nameservers", []), "networking.nameservers"))
        config = NetworkConfig()._with(bridges=bridges, vlans=vlans, interfaces=list(ifaces.values()))
        return dataclasses.replace(config, gateway4=gw4, gateway6=gw6, nameservers=servers)


def from_options(value: Any) -> NetworkConfig:
    """The model of an option tree read from network.nix; a broken or hand-extended file raises
    ValidationError naming the offending option (so no write ever drops it), and values the edits
    would refuse (bad names, ids, addresses) are refused here too."""
    config = _Reader().read(value)
    validate(config)
    return config


def load(store: FragmentStore) -> tuple[NetworkConfig, Fragment]:
    """The current model and the fragment it came from (its hash guards the later write)."""
    fragment = store.read(FRAGMENT_NAME)
    try:
        value = fragment.value()
    except ValidationError as exc:
        raise ValidationError(f"hyperconsole/network.nix cannot be read: {exc.message}", hint="fix it by hand or remove it") from exc
    return from_options(value), fragment


def render(config: NetworkConfig) -> str | None:
    """The fragment text, or None when nothing is configured (the file is then removed)."""
    options = to_options(config)
    return render_fragment(options) if options else None


def prepare(store: FragmentStore, fragment: Fragment, change: NetworkChange) -> ChangeSet:
    """A ChangeSet against the fragment as it was read by `load`: if the file changed since, the
    store's commit refuses it (no lost update)."""
    new_text = render(change.after)
    return ChangeSet((FragmentChange(FRAGMENT_NAME, fragment.text, new_text, fragment.content_hash),),
                     f"hyperconsole: network: {change.description}")


# -- moving addressing onto a bridge ------------------------------------------------------------------


@dataclass(frozen=True)
class Addressing:
    """An interface's layer-3 setup. A bridge member carries none (its frames belong to the bridge),
    so when an interface becomes a member its addressing has to move to the bridge."""

    dhcp: bool = False
    ipv4: tuple[str, ...] = ()
    ipv6: tuple[str, ...] = ()
    gateway4: str | None = None
    gateway6: str | None = None

    @property
    def is_empty(self) -> bool:
        return self == Addressing()

    def __str__(self) -> str:
        parts = (["DHCP"] if self.dhcp else []) + list(self.ipv4 + self.ipv6)
        parts += [f"default route via {gw}" for gw in (self.gateway4, self.gateway6) if gw]
        return ", ".join(parts)


def live_addressing(interfaces: Sequence[Any], routes: Sequence[Any]) -> dict[str, Addressing]:
    """What the host runs now, per interface: DHCP where an IPv4 address has a lease (dynamic),
    else its static global addresses, and the gateway of a default route leaving by it.
    `interfaces` and `routes` are InterfaceInfo and DefaultRoute from hyperconsole.host.interfaces."""
    out = {}
    for iface in interfaces:
        glob = [a for a in iface.addresses if a.scope == "global"]
        dhcp = any(a.dynamic and a.family == "inet" for a in glob)
        gateways = {r.family: r.gateway for r in routes if r.dev == iface.name and r.gateway}
        found = Addressing(
            dhcp=dhcp,
            ipv4=() if dhcp else tuple(a.cidr for a in glob if a.family == "inet"),
            ipv6=tuple(a.cidr for a in glob if a.family == "inet6" and not a.dynamic),
            gateway4=None if dhcp else gateways.get("inet"),
        )
        # An IPv6 default route learnt from router advertisements is learnt again on the bridge.
        if found.ipv6:
            found = dataclasses.replace(found, gateway6=gateways.get("inet6"))
        if not found.is_empty:
            out[iface.name] = found
    return out


def configured_addressing(config: NetworkConfig, name: str) -> Addressing:
    iface = config.interface(name)
    return Addressing(
        dhcp=bool(iface.dhcp), ipv4=iface.ipv4, ipv6=iface.ipv6,
        gateway4=config.gateway4.address if config.gateway4 and config.gateway4.interface == name else None,
        gateway6=config.gateway6.address if config.gateway6 and config.gateway6.interface == name else None,
    )


def new_members(change: NetworkChange) -> list[tuple[str, str]]:
    """(member, bridge) for each interface this change makes a bridge member."""
    before = {m for b in change.before.bridges for m in b.interfaces}
    return sorted((m, b.name) for b in change.after.bridges for m in b.interfaces if m not in before)


def move_addressing(change: NetworkChange, live: Mapping[str, Addressing], *, move: bool,
                    existing: Collection[str] | None = None) -> NetworkChange:
    """Say what each new bridge member gives up (its addressing in network.nix, else what the
    host runs on it now) and, with `move`, put that addressing on the bridge in the same change:
    the address, DHCP and the default route then follow the traffic to the bridge."""
    after, notes, stranded = change.after, [], []
    for member, bridge in new_members(change):
        configured = configured_addressing(after, member)
        found = configured if not configured.is_empty else live.get(member, Addressing())
        if found.is_empty:
            continue
        if not move:
            stranded.append(member)
            notes.append(f"{member} carries {found}; as a member of {bridge} it loses them: "
                         f"they have to move to {bridge} or the host loses that way in")
            continue
        target = configured_addressing(after, bridge)
        if not target.is_empty:
            raise ValidationError(f"{bridge} already has addressing in network.nix ({target}); "
                                  f"{member}'s cannot move onto it", hint="remove one of them first")
        old = after.interface(member)
        after = after.with_interface(dataclasses.replace(old, dhcp=None, ipv4=(), ipv6=()))
        after = after.with_interface(dataclasses.replace(after.interface(bridge), dhcp=True if found.dhcp else None,
                                                         ipv4=found.ipv4, ipv6=found.ipv6))
        for key, gw in (("gateway4", found.gateway4), ("gateway6", found.gateway6)):
            if gw:
                after = dataclasses.replace(after, **{key: Gateway(gw, bridge)})
        notes.append(f"{member}'s {found} moves to {bridge}")
    if after is change.after and not notes:
        return change
    moved = _finish(change.description + (" (addressing moved)" if after is not change.after else ""),
                    change.before, after, change.touched, change.bridges, existing)
    return dataclasses.replace(moved, warnings=moved.warnings + tuple(notes), stranded=tuple(stranded))


# -- impact -----------------------------------------------------------------------------------------


def impact(change: NetworkChange, interfaces: Sequence[Any], vm_nics: Iterable[tuple[str, str]],
           uplink: Uplink) -> Impact:
    """Which bridges the change alters, which VMs sit on them, and whether it touches the uplink.

    `interfaces` are InterfaceInfo from hyperconsole.host.interfaces (the host as it is now);
    `vm_nics` are (vm name, bridge or source device) pairs from the
    domains' XML."""
    host_master = {i.name: i.master for i in interfaces if getattr(i, "master", None)}
    bridge_names = {i.name for i in interfaces if getattr(i, "kind", "") == "bridge"}
    bridge_names |= {b.name for b in change.before.bridges} | {b.name for b in change.after.bridges}
    changed = set(change.bridges)
    for name in change.touched:
        if name in bridge_names:
            changed.add(name)
        if name in host_master:
            changed.add(host_master[name])
        for cfg in (change.before, change.after):
            changed.update(b.name for b in cfg.bridges if name in b.interfaces)
    affected = changed | set(change.touched)
    vms = sorted({vm for vm, source in vm_nics if source in affected})
    warnings = list(change.warnings)
    if vms:
        warnings.append(f"VMs on the changed interfaces may lose network: {', '.join(vms)}")
    return Impact(sorted(changed), vms, uplink.touched(affected), warnings)
