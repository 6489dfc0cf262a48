"""The network fragment model: validation (every refusal is one line and nothing is written),
rendering against a golden file, read-back round trip, and the impact preview."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from hyperconsole.errors import ValidationError
from hyperconsole.host import interfaces as I
from hyperconsole.host import netconfig as nc
from hyperconsole.nixos.store import FragmentStore

GOLDEN = Path(__file__).resolve().parent / "golden" / "network.nix"
HOST = {"eno1", "eno2", "eth0", "eth1", "lo"}


def full_config() -> nc.NetworkConfig:
    """Every kind of setting the fragment can hold, built only through the edit operations."""
    cfg = nc.NetworkConfig()
    steps = [
        lambda c: nc.add_bridge(c, "br0", ["eno1", "eno2"], rstp=True),
        lambda c: nc.add_bridge(c, "br-lab", ["eth1"]),
        lambda c: nc.add_vlan(c, "vlan20", 20, "eth0"),
        lambda c: nc.add_vlan(c, "vlan30", 30, "eth0"),
        lambda c: nc.set_address(c, "br0", address="192.0.2.10/24", gateway="192.0.2.1"),
        lambda c: nc.set_address(c, "br0", address="2001:db8::10/64", gateway="2001:db8::1"),
        lambda c: nc.set_address(c, "vlan20", dhcp=True),
        lambda c: nc.set_mtu(c, "br0", 9000),
        lambda c: nc.set_firewall_ports(c, "br0", tcp=[443, 22, 22], udp=[53]),
        lambda c: nc.set_nameservers(c, ["192.0.2.53", "2001:db8::53"]),
    ]
    for step in steps:
        cfg = step(cfg).after
    return cfg


def one_line(exc: pytest.ExceptionInfo) -> str:
    text = str(exc.value)
    assert "\n" not in text and text
    return text


# -- bridges -----------------------------------------------------------------------------------

def test_interface_in_at_most_one_bridge():
    cfg = nc.add_bridge(nc.NetworkConfig(), "br0", ["eth0"]).after
    with pytest.raises(ValidationError) as exc:
        nc.add_bridge(cfg, "br1", ["eth1", "eth0"])
    assert "eth0 is already in bridge br0" in one_line(exc)


def test_bridge_not_member_of_itself_nor_of_another_bridge():
    with pytest.raises(ValidationError) as exc:
        nc.add_bridge(nc.NetworkConfig(), "br0", ["br0"])
    assert "member of itself" in one_line(exc)
    cfg = nc.add_bridge(nc.NetworkConfig(), "br0", ["eth0"]).after
    with pytest.raises(ValidationError) as exc:
        nc.add_bridge(cfg, "br1", ["br0"])
    assert "cannot be a member of bridge br1" in one_line(exc)


def test_duplicate_bridge_and_duplicate_member_refused():
    cfg = nc.add_bridge(nc.NetworkConfig(), "br0", ["eth0"]).after
    with pytest.raises(ValidationError, match="already exists"):
        nc.add_bridge(cfg, "br0", ["eth1"])
    with pytest.raises(ValidationError, match="twice"):
        nc.add_bridge(nc.NetworkConfig(), "br0", ["eth0", "eth0"])


def test_remove_bridge_and_missing_bridge():
    cfg = nc.set_address(nc.add_bridge(nc.NetworkConfig(), "br0", ["eth0"]).after, "br0",
                         address="192.0.2.2/24", gateway="192.0.2.1").after
    removed = nc.remove_bridge(cfg, "br0")
    # The bridge's own addressing and the default gateway through it go with it.
    assert removed.after == nc.NetworkConfig()
    assert removed.touched == {"br0", "eth0"} and removed.bridges == {"br0"}
    with pytest.raises(ValidationError, match="there is no bridge br9"):
        nc.remove_bridge(cfg, "br9")


def test_bridge_with_vlan_on_it_cannot_be_removed():
    cfg = nc.add_vlan(nc.add_bridge(nc.NetworkConfig(), "br0", ["eth0"]).after, "v7", 7, "br0").after
    with pytest.raises(ValidationError, match="remove the VLAN first"):
        nc.remove_bridge(cfg, "br0")


def test_missing_members_are_warnings_not_refusals():
    change = nc.add_bridge(nc.NetworkConfig(), "br0", ["eth0", "enp9s0"], existing=HOST)
    assert change.warnings == ("bridge br0 member enp9s0 does not exist on this host (yet)",)
    # A VLAN declared in the same fragment counts as existing.
    cfg = nc.add_vlan(nc.NetworkConfig(), "vlan5", 5, "eth0", existing=HOST).after
    assert nc.add_bridge(cfg, "br5", ["vlan5"], existing=HOST).warnings == ()


# -- VLANs -------------------------------------------------------------------------------------

@pytest.mark.parametrize("vid", [0, 4095, -1, 10000, True, "5"])
def test_vlan_id_range(vid):
    with pytest.raises(ValidationError) as exc:
        nc.add_vlan(nc.NetworkConfig(), "v", vid, "eth0")
    assert "VLAN id must be a whole number from 1 to 4094" in one_line(exc)


@pytest.mark.parametrize("vid", [1, 4094])
def test_vlan_id_bounds_accepted(vid):
    assert nc.add_vlan(nc.NetworkConfig(), "v", vid, "eth0").after.vlan("v").id == vid


def test_vlan_id_unique_per_parent():
    cfg = nc.add_vlan(nc.NetworkConfig(), "v20", 20, "eth0").after
    with pytest.raises(ValidationError) as exc:
        nc.add_vlan(cfg, "v20b", 20, "eth0")
    assert "VLAN id 20 on eth0 is already used by v20" in one_line(exc)
    # The same id on another parent is a different VLAN.
    assert nc.add_vlan(cfg, "v20c", 20, "eth1").after.vlan("v20c").parent == "eth1"


def test_vlan_own_parent_and_missing_parent_warning():
    with pytest.raises(ValidationError, match="own parent"):
        nc.add_vlan(nc.NetworkConfig(), "v1", 1, "v1")
    change = nc.add_vlan(nc.NetworkConfig(), "v1", 1, "enp0s99", existing=HOST)
    assert change.warnings == ("VLAN v1 parent enp0s99 does not exist on this host (yet)",)
    assert change.touched == {"v1", "enp0s99"}


def test_remove_vlan():
    cfg = nc.add_vlan(nc.NetworkConfig(), "v1", 1, "eth0").after
    assert nc.remove_vlan(cfg, "v1").after == nc.NetworkConfig()
    with pytest.raises(ValidationError, match="there is no VLAN"):
        nc.remove_vlan(cfg, "v2")
    in_bridge = nc.add_bridge(cfg, "br0", ["v1"]).after
    with pytest.raises(ValidationError, match="member of bridge br0"):
        nc.remove_vlan(in_bridge, "v1")


# -- addresses ---------------------------------------------------------------------------------

@pytest.mark.parametrize("cidr, words", [
    ("192.0.2.10", "not an address with prefix"),
    ("192.0.2.10/33", "not an address with prefix"),
    ("300.0.2.10/24", "not an address with prefix"),
    ("192.0.2.010/24", "not an address with prefix"),  # leading zeros are ambiguous (octal to some tools)
    ("2001:db8::g/64", "not an address with prefix"),
    ("2001:db8::1/129", "not an address with prefix"),
    ("192.0.2.0/24", "network address"),
    ("192.0.2.255/24", "broadcast address"),
    ("0.0.0.0/0", "cannot be an interface address"),
    ("224.0.0.1/4", "cannot be an interface address"),
    ("127.0.0.2/8", "cannot be an interface address"),
    ("::1/128", "cannot be an interface address"),
    ("", "not an address with prefix"),
])
def test_invalid_cidr_refused(cidr, words):
    with pytest.raises(ValidationError) as exc:
        nc.set_address(nc.NetworkConfig(), "eth0", address=cidr)
    assert words in one_line(exc)


def test_valid_cidr_is_normalised():
    cfg = nc.set_address(nc.NetworkConfig(), "eth0", address="192.0.2.10/255.255.255.0").after
    assert cfg.interface("eth0").ipv4 == ("192.0.2.10/24",)
    assert cfg.interface("eth0").dhcp is False
    cfg = nc.set_address(cfg, "eth0", address="2001:DB8:0::10/64").after
    assert cfg.interface("eth0").ipv6 == ("2001:db8::10/64",)
    assert nc.set_address(nc.NetworkConfig(), "p2p", address="192.0.2.0/31").after.interface("p2p").ipv4 == ("192.0.2.0/31",)


@pytest.mark.parametrize("cidr, gw, words", [
    ("192.0.2.10/24", "198.51.100.1", "not inside 192.0.2.0/24"),
    ("192.0.2.10/24", "2001:db8::1", "is IPv6 but the address"),
    ("192.0.2.10/24", "192.0.2.10", "own address"),
    ("192.0.2.10/24", "192.0.2.255", "broadcast"),
    ("192.0.2.10/24", "nonsense", "not a valid IP address"),
    ("2001:db8::10/64", "2001:db9::1", "not inside 2001:db8::/64"),
])
def test_gateway_must_be_inside_the_subnet(cidr, gw, words):
    with pytest.raises(ValidationError) as exc:
        nc.set_address(nc.NetworkConfig(), "eth0", address=cidr, gateway=gw)
    assert words in one_line(exc)


def test_dhcp_and_static_exclusive():
    with pytest.raises(ValidationError, match="either DHCP or a static address"):
        nc.set_address(nc.NetworkConfig(), "eth0")
    with pytest.raises(ValidationError, match="either DHCP or a static address"):
        nc.set_address(nc.NetworkConfig(), "eth0", dhcp=True, address="192.0.2.2/24")
    with pytest.raises(ValidationError, match="DHCP provides it"):
        nc.set_address(nc.NetworkConfig(), "eth0", dhcp=True, gateway="192.0.2.1")


def test_dhcp_replaces_static_ipv4_and_its_gateway_keeps_ipv6():
    cfg = nc.set_address(nc.NetworkConfig(), "eth0", address="192.0.2.2/24", gateway="192.0.2.1").after
    cfg = nc.set_address(cfg, "eth0", address="2001:db8::2/64").after
    cfg = nc.set_address(cfg, "eth0", dhcp=True).after
    assert cfg.interface("eth0") == nc.InterfaceConfig("eth0", dhcp=True, ipv6=("2001:db8::2/64",))
    assert cfg.gateway4 is None


# -- MTU and ports -----------------------------------------------------------------------------

@pytest.mark.parametrize("mtu", [67, 65536, 0, -1, True, 1500.0])
def test_mtu_range(mtu):
    with pytest.raises(ValidationError) as exc:
        nc.set_mtu(nc.NetworkConfig(), "eth0", mtu)
    assert "MTU must be a whole number from 68 to 65535" in one_line(exc)


def test_mtu_bounds_and_ipv6_minimum():
    assert nc.set_mtu(nc.NetworkConfig(), "eth0", 68).after.interface("eth0").mtu == 68
    assert nc.set_mtu(nc.NetworkConfig(), "eth0", 65535).after.interface("eth0").mtu == 65535
    v6 = nc.set_address(nc.NetworkConfig(), "eth0", address="2001:db8::2/64").after
    with pytest.raises(ValidationError) as exc:
        nc.set_mtu(v6, "eth0", 1279)
    assert "minimum for an interface with IPv6" in one_line(exc)
    assert nc.set_mtu(v6, "eth0", 1280).after.interface("eth0").mtu == 1280
    small = nc.set_mtu(nc.NetworkConfig(), "eth0", 576).after
    with pytest.raises(ValidationError, match="raise the MTU first"):
        nc.set_address(small, "eth0", address="2001:db8::2/64")
    assert nc.set_mtu(small, "eth0", None).after == nc.NetworkConfig()


@pytest.mark.parametrize("ports", [[0], [65536], [-22], [True], ["22"]])
def test_port_range(ports):
    with pytest.raises(ValidationError) as exc:
        nc.set_firewall_ports(nc.NetworkConfig(), "eth0", tcp=ports)
    assert "port must be a whole number from 1 to 65535" in one_line(exc)
    with pytest.raises(ValidationError):
        nc.set_firewall_ports(nc.NetworkConfig(), "eth0", udp=ports)


def test_ports_sorted_unique_and_bounds():
    cfg = nc.set_firewall_ports(nc.NetworkConfig(), "eth0", tcp=[65535, 1, 1], udp=[53]).after
    assert cfg.interface("eth0").tcp_ports == (1, 65535)
    assert nc.set_firewall_ports(cfg, "eth0").after == nc.NetworkConfig()


def test_nameservers_validated():
    with pytest.raises(ValidationError, match="nameserver 'dns.example' is not a valid IP"):
        nc.set_nameservers(nc.NetworkConfig(), ["dns.example"])


# -- rendering, golden file, round trip -----------------------------------------------------------

def test_rendering_matches_golden_file():
    text = nc.render(full_config())
    if os.environ.get("REGENERATE_GOLDEN"):
        GOLDEN.write_text(text)
    assert text == GOLDEN.read_text(), "rendering changed; review and rerun with REGENERATE_GOLDEN=1"


def test_read_back_round_trip(tmp_path):
    store = FragmentStore(tmp_path)
    (tmp_path / "hyperconsole").mkdir()
    (tmp_path / "hyperconsole" / "network.nix").write_text(GOLDEN.read_text())
    cfg, fragment = nc.load(store)
    assert cfg == full_config()
    assert nc.render(cfg) == fragment.text


def test_absent_fragment_is_empty_config_and_empty_config_deletes_file(tmp_path):
    store = FragmentStore(tmp_path)
    cfg, fragment = nc.load(store)
    assert cfg == nc.NetworkConfig() and not fragment.exists
    assert nc.render(cfg) is None


@pytest.mark.parametrize("text, words", [
    ("{ networking.hostName = \"h\"; }", "networking.hostName is not an option hyperconsole manages"),
    ("{ networking.bridges.br0.interfaces = [ 1 ]; }", "must be a list of strings"),
    ("{ networking.vlans.v.id = 9999; networking.vlans.v.interface = \"eth0\"; }", "VLAN id must be"),
    ("{ networking.bridges.\"b r\".interfaces = [ ]; }", "may contain only letters, digits"),
    ("{ networking.interfaces.lo.mtu = 1500; }", "may not be 'lo'"),
    ("{ networking = import ./x.nix; }", "cannot be read"),
    ("{ services.openssh.enable = true; }", "top level.services is not an option"),
])
def test_hand_edited_fragment_is_refused_not_overwritten(tmp_path, text, words):
    (tmp_path / "hyperconsole").mkdir()
    (tmp_path / "hyperconsole" / "network.nix").write_text(text)
    with pytest.raises(ValidationError) as exc:
        nc.load(FragmentStore(tmp_path))
    assert words in one_line(exc)


def test_prepare_is_guarded_against_lost_updates(tmp_path):
    from hyperconsole.nixos.store import ConflictError

    store = FragmentStore(tmp_path)
    cfg, fragment = nc.load(store)
    changeset = nc.prepare(store, fragment, nc.add_bridge(cfg, "br0", ["eth0"]))
    assert "+    bridges = {" in changeset.diff()
    (tmp_path / "hyperconsole").mkdir()
    (tmp_path / "hyperconsole" / "network.nix").write_text("{ }\n")  # someone else wrote meanwhile
    with pytest.raises(ConflictError):
        store.commit(changeset)
    assert (tmp_path / "hyperconsole" / "network.nix").read_text() == "{ }\n"


# -- impact --------------------------------------------------------------------------------------

VM_NICS = [("web", "br0"), ("db", "br0"), ("lab1", "br-lab"), ("nat", "default")]


def known(*names: str) -> I.Uplink:
    return I.Uplink(frozenset(names))


def test_impact_lists_vms_on_changed_bridge(recorded_host):
    change = nc.add_bridge(nc.NetworkConfig(), "br-lab", ["eth1"])
    result = nc.impact(change, recorded_host, VM_NICS, known("br0", "bond0"))
    assert result.bridges_changed == ["br-lab"] and result.vms_on_them == ["lab1"]
    assert result.touches_uplink is False


def test_impact_of_member_change_reaches_host_bridge_and_uplink(recorded_host):
    # bond0 sits in br0 on the recorded host; setting its MTU changes br0 for every VM on it.
    change = nc.set_mtu(nc.NetworkConfig(), "bond0", 1500)
    result = nc.impact(change, recorded_host, VM_NICS, known("br0", "bond0", "eno1", "eno2"))
    assert result.bridges_changed == ["br0"] and result.vms_on_them == ["db", "web"]
    assert result.uplinks_touched == ["bond0", "br0"]


def test_unknown_uplink_means_any_touched_interface_may_be_it(recorded_host):
    unknown = I.Uplink(known=False, reason="ip failed")
    result = nc.impact(nc.set_mtu(nc.NetworkConfig(), "eth7", 1400), [], [], unknown)
    assert result.uplinks_touched == ["eth7"]
    # A change that touches no interface touches no uplink either.
    assert nc.impact(nc.set_nameservers(nc.NetworkConfig(), ["192.0.2.53"]), [], [], unknown).touches_uplink is False


def test_nameserver_change_touches_nothing(recorded_host):
    result = nc.impact(nc.set_nameservers(nc.NetworkConfig(), ["192.0.2.53"]), recorded_host, VM_NICS, known("br0"))
    assert result == nc.Impact([], [], [], [])


# -- the uplink made a bridge member ------------------------------------------------------------------

LIVE_ROUTES = [I.DefaultRoute("inet", "eth0", "192.0.2.1")]


def host_with(*addresses: I.AddressInfo, name: str = "eth0") -> list[I.InterfaceInfo]:
    return [I.InterfaceInfo(name, 2, "physical", None, "up", True, 1000, 1500, "52:54:00:00:00:01", addresses, None)]


def test_live_static_address_and_default_route_are_offered_then_moved():
    live = nc.live_addressing(host_with(I.AddressInfo("inet", "192.0.2.5", 24), I.AddressInfo("inet6", "fe80::1", 64, "link")),
                              LIVE_ROUTES)
    assert live == {"eth0": nc.Addressing(ipv4=("192.0.2.5/24",), gateway4="192.0.2.1")}
    change = nc.add_bridge(nc.NetworkConfig(), "br0", ["eth0"])
    offered = nc.move_addressing(change, live, move=False)
    assert offered.after == change.after and offered.stranded == ("eth0",)
    assert any("eth0 carries 192.0.2.5/24, default route via 192.0.2.1; as a member of br0 it loses them" in w
               for w in offered.warnings)
    moved = nc.move_addressing(change, live, move=True)
    assert moved.stranded == () and moved.after.interface("br0").ipv4 == ("192.0.2.5/24",)
    assert moved.after.gateway4 == nc.Gateway("192.0.2.1", "br0")
    assert "eth0's 192.0.2.5/24, default route via 192.0.2.1 moves to br0" in moved.warnings


def test_dhcp_lease_moves_as_dhcp_and_configured_addressing_wins_over_live():
    live = nc.live_addressing(host_with(I.AddressInfo("inet", "192.0.2.77", 24, dynamic=True)), LIVE_ROUTES)
    assert live == {"eth0": nc.Addressing(dhcp=True)}
    moved = nc.move_addressing(nc.add_bridge(nc.NetworkConfig(), "br0", ["eth0"]), live, move=True)
    assert moved.after.interface("br0").dhcp is True and moved.after.gateway4 is None
    # network.nix already addresses eth0: that is what moves, and eth0 keeps none of it.
    cfg = nc.set_address(nc.NetworkConfig(), "eth0", address="198.51.100.9/24", gateway="198.51.100.1").after
    moved = nc.move_addressing(nc.add_bridge(cfg, "br0", ["eth0"]), live, move=True)
    assert moved.after.interface("br0").ipv4 == ("198.51.100.9/24",) and moved.after.interface("eth0").is_empty
    assert moved.after.gateway4 == nc.Gateway("198.51.100.1", "br0")


def test_member_without_addressing_needs_no_move():
    change = nc.add_bridge(nc.NetworkConfig(), "br0", ["eth1"])
    assert nc.move_addressing(change, nc.live_addressing(host_with(), LIVE_ROUTES), move=True) == change


def test_moving_onto_an_addressed_bridge_is_refused():
    cfg = nc.set_address(nc.NetworkConfig(), "br0", address="10.0.0.1/24").after
    change = nc.add_bridge(cfg, "br0", ["eth0"])
    with pytest.raises(ValidationError) as exc:
        nc.move_addressing(change, {"eth0": nc.Addressing(dhcp=True)}, move=True)
    assert "br0 already has addressing in network.nix" in one_line(exc)
