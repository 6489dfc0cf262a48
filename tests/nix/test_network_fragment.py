"""Every network.nix the host-networking code can write parses and evaluates with the real Nix,
reads back to the same model, and matches the declared NixOS option types."""

from __future__ import annotations

import ipaddress

import pytest

from hyperconsole.host import netconfig as nc
from hyperconsole.nixos.render import parse

# Declared types, from the NixOS options reference (nixpkgs nixos/modules/tasks/network-interfaces.nix
# and services/networking/firewall.nix), looked up by option path. networking.vlans.<name> is a
# submodule whose fields the options page does not list separately: id is `types.int` and
# interface `types.str` in network-interfaces.nix (vlanOpts). The address submodule (addrOpts) has
# address `types.str` and prefixLength an int checked to 0..32 / 0..128.
NETWORK_OPTION_TYPES = {
    "networking.bridges.*.interfaces": "list of string",
    "networking.bridges.*.rstp": "bool",
    "networking.vlans.*.id": "int",
    "networking.vlans.*.interface": "string",
    "networking.interfaces.*.useDHCP": "null or bool",
    "networking.interfaces.*.mtu": "null or int",
    "networking.interfaces.*.ipv4.addresses": "list of ipv4 address",
    "networking.interfaces.*.ipv6.addresses": "list of ipv6 address",
    "networking.defaultGateway.address": "string",
    "networking.defaultGateway.interface": "null or string",
    "networking.defaultGateway6.address": "string",
    "networking.defaultGateway6.interface": "null or string",
    "networking.nameservers": "list of string",
    "networking.firewall.interfaces.*.allowedTCPPorts": "list of port",
    "networking.firewall.interfaces.*.allowedUDPPorts": "list of port",
}


def _int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _addresses(version: int):
    limit = 32 if version == 4 else 128

    def check(v) -> bool:
        if not isinstance(v, list):
            return False
        for item in v:
            if not (isinstance(item, dict) and set(item) == {"address", "prefixLength"}):
                return False
            if not (_int(item["prefixLength"]) and 0 <= item["prefixLength"] <= limit):
                return False
            try:
                if ipaddress.ip_address(item["address"]).version != version:
                    return False
            except ValueError:
                return False
        return True

    return check


CHECKS = {
    "bool": lambda v: isinstance(v, bool),
    "int": _int,
    "string": lambda v: isinstance(v, str),
    "null or bool": lambda v: v is None or isinstance(v, bool),
    "null or int": lambda v: v is None or _int(v),
    "null or string": lambda v: v is None or isinstance(v, str),
    "list of string": lambda v: isinstance(v, list) and all(isinstance(i, str) for i in v),
    "list of port": lambda v: isinstance(v, list) and all(_int(i) and 0 <= i <= 65535 for i in v),
    "list of ipv4 address": _addresses(4),
    "list of ipv6 address": _addresses(6),
}


def _declared(path: tuple[str, ...]) -> str | None:
    for pattern, kind in NETWORK_OPTION_TYPES.items():
        parts = pattern.split(".")
        if len(parts) == len(path) and all(p in ("*", q) for p, q in zip(parts, path)):
            return kind
    return None


def check_types(value, path=()) -> list[str]:
    kind = _declared(path) if path else None
    if kind is not None:
        return [] if CHECKS[kind](value) else [f"{'.'.join(path)}: expected {kind}, got {value!r}"]
    if isinstance(value, dict) and value:
        return [p for key, child in value.items() for p in check_types(child, (*path, key))]
    return [f"{'.'.join(path)}: not a declared option"]


def _every_fragment() -> dict[str, nc.NetworkConfig]:
    """Each edit on its own, plus all of them together and with odd-but-valid names."""
    empty = nc.NetworkConfig()
    cases = {
        "bridge": nc.add_bridge(empty, "br0", ["eno1", "eno2"]).after,
        "bridge-rstp-no-members": nc.add_bridge(empty, "br0", [], rstp=True).after,
        "vlan": nc.add_vlan(empty, "vlan20", 20, "eth0").after,
        "vlan-bounds": nc.add_vlan(nc.add_vlan(empty, "v1", 1, "eth0").after, "v4094", 4094, "eth0").after,
        "dhcp": nc.set_address(empty, "eth0", dhcp=True).after,
        "static4-gw": nc.set_address(empty, "eth0", address="192.0.2.10/24", gateway="192.0.2.1").after,
        "static6-gw": nc.set_address(empty, "eth0", address="2001:db8::10/64", gateway="2001:db8::1").after,
        "static4-nogw": nc.set_address(empty, "eth0", address="10.0.0.2/8").after,
        "mtu": nc.set_mtu(empty, "eth0", 9000).after,
        "ports": nc.set_firewall_ports(empty, "eth0", tcp=[22, 443], udp=[53, 65535]).after,
        "dns": nc.set_nameservers(empty, ["192.0.2.53", "2001:db8::53"]).after,
        # Names that are valid interface names but not Nix identifiers (or are Nix keywords) must be
        # quoted by the renderer.
        "odd-names": nc.add_vlan(nc.add_bridge(empty, "0br", ["a.b", "x-y", "in", "_9"]).after, "with", 7, "a.b").after,
        "moved-address": nc.move_addressing(nc.add_bridge(empty, "br0", ["eth0"]),
                                            {"eth0": nc.Addressing(ipv4=("192.0.2.5/24",), gateway4="192.0.2.1")},
                                            move=True).after,
    }
    everything = empty
    for cfg in cases.values():
        for b in cfg.bridges:
            if everything.bridge(b.name) is None and not any(m in x.interfaces for x in everything.bridges for m in b.interfaces):
                everything = nc.add_bridge(everything, b.name, list(b.interfaces), rstp=b.rstp).after
    everything = nc.add_vlan(everything, "vlan20", 20, "eth0").after
    everything = nc.set_address(everything, "br0", address="192.0.2.10/24", gateway="192.0.2.1").after
    everything = nc.set_address(everything, "br0", address="2001:db8::10/64", gateway="2001:db8::1").after
    everything = nc.set_mtu(everything, "br0", 1500).after
    everything = nc.set_firewall_ports(everything, "br0", tcp=[22], udp=[53]).after
    everything = nc.set_nameservers(everything, ["192.0.2.53"]).after
    cases["everything"] = everything
    return cases


FRAGMENTS = _every_fragment()


@pytest.mark.parametrize("name", sorted(FRAGMENTS))
def test_network_fragment_evaluates_and_matches_option_types(nix, tmp_path, name):
    cfg = FRAGMENTS[name]
    text = nc.render(cfg)
    evaluated = nix.eval_text(text, tmp_path)
    assert evaluated == parse(text) == nc.to_options(cfg)
    assert check_types(evaluated) == []
    assert nc.from_options(evaluated) == cfg


def test_type_table_catches_mistakes():
    assert check_types({"networking": {"vlans": {"v": {"id": "20", "interface": "eth0"}}}})
    assert check_types({"networking": {"interfaces": {"e": {"ipv4": {"addresses": [{"address": "2001:db8::1", "prefixLength": 24}]}}}}})
    assert check_types({"networking": {"interfaces": {"e": {"ipv4": {"addresses": [{"address": "192.0.2.1", "prefixLength": 33}]}}}}})
    assert check_types({"networking": {"bridges": {"b": {"stp": True}}}})
    assert check_types({"networking": {"firewall": {"interfaces": {"e": {"allowedTCPPorts": [70000]}}}}})
