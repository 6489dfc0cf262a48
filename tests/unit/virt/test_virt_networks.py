"""hyperconsole.virt.networks on libvirt's test driver, one node XML per test.

What the test driver cannot do, and where it is covered instead:
- DHCP leases (virNetworkGetDHCPLeases is not implemented): here we check the "not supported"
  flag; a real lease database is read in tests/integration/test_networks_real.py.
- the INACTIVE flag of virNetworkGetXMLDesc: networks falls back to the live XML (same thing here).
- starting a network creates no bridge device, so bridge creation is checked on the real daemon.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

import libvirt
import pytest

from hyperconsole.errors import ValidationError
from hyperconsole.virt import inventory, networks
from hyperconsole.virt.errors import VirtError
from hyperconsole.virt.networks import NewNetworkSpec
from tests.fixtures import build_host_xml, domain_xml, host_interface_xml, network_xml


def host(domains=(), networks=None, interfaces=None) -> str:
    if networks is None:
        networks = [
            network_xml("default", ip="192.168.122.1", dhcp=("192.168.122.2", "192.168.122.254")),
            network_xml("isolated", mode=None),
            network_xml("lan", mode="bridge", bridge="br0"),
        ]
    if interfaces is None:
        interfaces = [host_interface_xml("eth0"), host_interface_xml("br0", kind="bridge", bridge_ports=["eth0"])]
    return build_host_xml(domains=list(domains), networks=networks, interfaces=interfaces)


def dhcp_of(mgr, name: str) -> list[tuple[str, str]]:
    root = ET.fromstring(mgr.conn.networkLookupByName(name).XMLDesc(0))
    return [(r.get("start"), r.get("end")) for r in root.findall("ip/dhcp/range")]




# --------------------------------------------------------------------------- reading


def test_overview_details_and_vm_usage(open_host):
    mgr = open_host(host(domains=[
        domain_xml("web", nics=["default"]),
        domain_xml("db", state="shutoff", nics=["default", {"bridge": "br0"}]),
        domain_xml("bridged", state="shutoff", nics=["lan"]),
        domain_xml("loner", state="shutoff"),
    ]))
    mgr.conn.networkLookupByName("default").setAutostart(1)
    overview = networks.networks_overview(mgr)
    by_name = {n.name: n for n in overview.networks}
    assert list(by_name) == ["default", "isolated", "lan"]

    default = by_name["default"]
    assert (default.forward_mode, default.active, default.autostart, default.persistent) == ("nat", True, True, True)
    assert default.ips == (networks.IpRange("ipv4", "192.168.122.1", 24, (("192.168.122.2", "192.168.122.254"),)),)
    assert default.vms == ("db", "web")
    assert by_name["isolated"].forward_mode == "isolated"
    assert by_name["isolated"].vms == ()
    lan = by_name["lan"]
    assert (lan.forward_mode, lan.bridge, lan.ips, lan.vms) == ("bridge", "br0", (), ("bridged",))

    # The host bridge br0 carries both the type='bridge' NIC and the network bridged onto it.
    assert overview.usage.on_bridge("br0", overview.networks) == ("bridged", "db")
    assert overview.usage.on_bridge("nope") == ()


def test_nic_usage_reads_each_domain_once(open_host, monkeypatch):
    """Usage is one pass over the domains for all networks, not one pass per network."""
    mgr = open_host(host(domains=[domain_xml(f"vm{i}", state="shutoff", nics=["default"]) for i in range(5)]))
    calls = []
    real = libvirt.virDomain.XMLDesc
    monkeypatch.setattr(libvirt.virDomain, "XMLDesc", lambda self, flags=0: calls.append(self.name()) or real(self, flags))
    overview = networks.networks_overview(mgr)
    assert sorted(calls) == [f"vm{i}" for i in range(5)]  # shut off: inactive XML only, once each
    assert overview.usage.on_network("default") == tuple(f"vm{i}" for i in range(5))


def test_running_vm_live_xml_counts_too(open_host, monkeypatch):
    """A NIC hot-plugged into a running VM exists only in its live XML and still counts."""
    mgr = open_host(host(domains=[domain_xml("web", nics=[])]))
    live_flags = []
    real = libvirt.virDomain.XMLDesc

    def fake(self, flags=0):
        live_flags.append(flags)
        xml = real(self, flags)
        if flags & libvirt.VIR_DOMAIN_XML_INACTIVE:
            return xml
        root = ET.fromstring(xml)
        nic = ET.SubElement(root.find("devices"), "interface", type="network")
        ET.SubElement(nic, "source", network="isolated", bridge="virbr9")
        return ET.tostring(root, encoding="unicode")

    monkeypatch.setattr(libvirt.virDomain, "XMLDesc", fake)
    usage = inventory.usage(mgr)
    assert usage.on_network("isolated") == ("web",)
    assert usage.by_bridge == {"virbr9": ("web",)}
    assert len(live_flags) == 2


def test_details_of_unknown_network_is_one_line(open_host):
    mgr = open_host(host())
    with pytest.raises(ValidationError, match="no libvirt network named 'ghost'"):
        networks.network_info(mgr, "ghost")
    with pytest.raises(ValidationError, match="no network given"):
        networks.start_network(mgr, "")


def test_leases_unsupported_on_test_driver(open_host):
    mgr = open_host(host())
    leases = networks.dhcp_leases(mgr, "default")
    assert leases.supported is False
    assert leases.leases == ()
    assert "not supported" in leases.reason


def test_leases_parsed_when_driver_has_them(open_host, monkeypatch):
    mgr = open_host(host())
    monkeypatch.setattr(libvirt.virNetwork, "DHCPLeases", lambda self, mac=None, flags=0: [
        {"iface": "virbr0", "expirytime": 1700000000, "type": 0, "mac": "52:54:00:AA:BB:CC",
         "iaid": None, "ipaddr": "192.168.122.50", "prefix": 24, "hostname": "web", "clientid": "01:52"},
        {"iface": "virbr0", "expirytime": 0, "type": 0, "mac": "52:54:00:00:00:01",
         "iaid": None, "ipaddr": "192.168.122.3", "prefix": 24, "hostname": None, "clientid": None},
    ])
    leases = networks.dhcp_leases(mgr, "default")
    assert leases.supported
    assert leases.leases == (
        networks.Lease("52:54:00:00:00:01", "192.168.122.3/24", "", 0, ""),
        networks.Lease("52:54:00:aa:bb:cc", "192.168.122.50/24", "web", 1700000000, "01:52"),
    )


def test_leases_other_error_is_virterror(open_host, monkeypatch, fake_error):
    mgr = open_host(host())

    def boom(self, mac=None, flags=0):
        raise fake_error(libvirt.VIR_ERR_INTERNAL_ERROR, "lease file corrupt\nsecond line")

    monkeypatch.setattr(libvirt.virNetwork, "DHCPLeases", boom)
    with pytest.raises(VirtError, match=r"^read DHCP leases of default: lease file corrupt$"):
        networks.dhcp_leases(mgr, "default")


# --------------------------------------------------------------------------- start/stop/autostart


def test_start_stop_autostart(open_host):
    mgr = open_host(host())
    networks.stop_network(mgr, "isolated")
    assert not networks.network_info(mgr, "isolated").active
    networks.start_network(mgr, "isolated")
    assert networks.network_info(mgr, "isolated").active
    networks.set_network_autostart(mgr, "isolated", True)
    assert networks.network_info(mgr, "isolated").autostart
    networks.set_network_autostart(mgr, "isolated", False)
    assert not networks.network_info(mgr, "isolated").autostart
    with pytest.raises(VirtError, match="^start network isolated: "):
        networks.start_network(mgr, "isolated")  # already running: libvirt's one line, wrapped


def test_autostart_refused_for_transient(open_host):
    mgr = open_host(host())
    mgr.conn.networkCreateXML(network_xml("temp", mode=None))
    with pytest.raises(ValidationError, match="transient"):
        networks.set_network_autostart(mgr, "temp", True)


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize("spec, message", [
    (NewNetworkSpec("", mode="isolated"), "network name is empty"),
    (NewNetworkSpec("a/b", mode="isolated"), "may not contain '/'"),
    (NewNetworkSpec("x" * 65, mode="isolated"), "at most 64"),
    (NewNetworkSpec("bad\nname", mode="isolated"), "control characters"),
    (NewNetworkSpec(" pad", mode="isolated"), "whitespace"),
    (NewNetworkSpec("n", mode="open"), "mode must be one of"),
    (NewNetworkSpec("n", mode="nat"), "needs an IPv4 address"),
    (NewNetworkSpec("n", mode="route"), "needs an IPv4 address"),
    (NewNetworkSpec("n", mode="nat", cidr="192.168.50.1"), "with prefix"),
    (NewNetworkSpec("n", mode="nat", cidr="192.168.500.1/24"), "not an address with prefix"),
    (NewNetworkSpec("n", mode="nat", cidr="fd00::1/64"), "IPv6"),
    (NewNetworkSpec("n", mode="nat", cidr="10.0.0.1/31"), "too small"),
    (NewNetworkSpec("n", mode="nat", cidr="10.0.0.255/24"), "broadcast address"),
    (NewNetworkSpec("n", mode="nat", cidr="10.0.0.1/24", dhcp_start="10.0.0.2"), "both a start and an end"),
    (NewNetworkSpec("n", mode="isolated", dhcp_start="10.0.0.2", dhcp_end="10.0.0.9"), "needs the network's IPv4"),
    (NewNetworkSpec("n", cidr="10.0.0.1/24", dhcp_start="10.0.1.2", dhcp_end="10.0.1.9"), "start 10.0.1.2 is outside 10.0.0.0/24"),
    (NewNetworkSpec("n", cidr="10.0.0.1/24", dhcp_start="10.0.0.2", dhcp_end="10.0.1.9"), "end 10.0.1.9 is outside"),
    (NewNetworkSpec("n", cidr="10.0.0.1/24", dhcp_start="10.0.0.0", dhcp_end="10.0.0.9"), "network address"),
    (NewNetworkSpec("n", cidr="10.0.0.1/24", dhcp_start="10.0.0.2", dhcp_end="10.0.0.255"), "broadcast address"),
    (NewNetworkSpec("n", cidr="10.0.0.1/24", dhcp_start="10.0.0.1", dhcp_end="10.0.0.9"), "gateway address"),
    (NewNetworkSpec("n", cidr="10.0.0.100/24", dhcp_start="10.0.0.2", dhcp_end="10.0.0.200"), "includes the gateway"),
    (NewNetworkSpec("n", cidr="10.0.0.1/24", dhcp_start="10.0.0.9", dhcp_end="10.0.0.2"), "after its end"),
    (NewNetworkSpec("n", cidr="10.0.0.1/24", dhcp_start="ten", dhcp_end="10.0.0.9"), "not an IPv4 address"),
    (NewNetworkSpec("n", mode="bridge"), "needs the name of an existing host bridge"),
    (NewNetworkSpec("n", mode="bridge", bridge="br0", cidr="10.0.0.1/24"), "no address or DHCP"),
    (NewNetworkSpec("n", mode="bridge", bridge="br0", forward_dev="eth0"), "no forward device"),
    (NewNetworkSpec("n", mode="bridge", bridge="averyveryverylongbr"), "longer than 15"),
    (NewNetworkSpec("n", mode="nat", cidr="10.0.0.1/24", bridge="vir br"), "may contain only letters"),
    (NewNetworkSpec("n", mode="isolated", forward_dev="eth0"), "forwards nowhere"),
])
def test_create_refuses_bad_input_and_changes_nothing(open_host, spec, message):
    mgr = open_host(host())
    before = sorted(n.name() for n in mgr.conn.listAllNetworks(0))
    with pytest.raises(ValidationError, match=message) as info:
        networks.create_network(mgr, spec)
    assert "\n" not in str(info.value)
    assert sorted(n.name() for n in mgr.conn.listAllNetworks(0)) == before


@pytest.mark.parametrize("spec, message", [
    (NewNetworkSpec("default", mode="isolated"), "'default' already exists"),
    (NewNetworkSpec("n2", mode="nat", cidr="192.168.122.77/25"), "overlaps 192.168.122.0/24 of network 'default'"),
    (NewNetworkSpec("n2", mode="bridge", bridge="br7"), "no host bridge named 'br7'"),
    (NewNetworkSpec("n2", mode="bridge", bridge="eth0"), "host interface 'eth0' is not a bridge"),
])
def test_create_refuses_what_the_host_has(open_host, spec, message):
    mgr = open_host(host())
    with pytest.raises(ValidationError, match=message):
        networks.create_network(mgr, spec)


def test_create_refuses_taken_virbr(open_host):
    mgr = open_host(host(networks=[network_xml("a", mode=None, bridge="virbr5")]))
    with pytest.raises(ValidationError, match="bridge 'virbr5' already belongs to network 'a'"):
        networks.create_network(mgr, NewNetworkSpec("b", mode="isolated", bridge="virbr5"))


def test_network_address_means_first_host():
    assert str(networks.parse_gateway("192.168.50.0/24")) == "192.168.50.1/24"
    assert str(networks.parse_gateway(" 10.1.2.3/16 ")) == "10.1.2.3/16"


# --------------------------------------------------------------------------- XML (golden)


GOLDEN_SPECS = {
    "net-nat.xml": NewNetworkSpec("nat-net", mode="nat", cidr="192.168.100.1/24", dhcp_start="192.168.100.10",
                                  dhcp_end="192.168.100.200", forward_dev="eth0"),
    "net-routed.xml": NewNetworkSpec("routed", mode="route", cidr="10.20.0.0/16", bridge="virbr20"),
    "net-isolated.xml": NewNetworkSpec("iso <&\"'> ünï", mode="isolated", cidr="172.16.9.1/28",
                                       dhcp_start="172.16.9.2", dhcp_end="172.16.9.14"),
    "net-isolated-noip.xml": NewNetworkSpec("quiet", mode="isolated"),
    "net-bridge.xml": NewNetworkSpec("lan2", mode="bridge", bridge="br0"),
}


@pytest.mark.parametrize("golden_name", sorted(GOLDEN_SPECS))
def test_network_xml_golden(golden, golden_name):
    spec = GOLDEN_SPECS[golden_name]
    networks.validate_network_spec(spec)
    xml = networks.build_network_xml(spec)
    golden(golden_name, xml)
    assert ET.fromstring(xml).findtext("name") == spec.name  # escaping round-trips


@pytest.mark.parametrize("golden_name", sorted(GOLDEN_SPECS))
def test_create_each_mode_defines_what_was_asked(open_host, golden_name):
    spec = GOLDEN_SPECS[golden_name]
    mgr = open_host(host(networks=[]))
    result = networks.create_network(mgr, spec, start=True, autostart=True)
    assert (result.name, result.started, result.autostart) == (spec.name, True, True)
    details = networks.network_info(mgr, spec.name)
    assert (details.active, details.autostart, details.persistent) == (True, True, True)
    assert details.forward_mode == spec.mode
    if spec.mode == "bridge":
        assert details.bridge == "br0"
    if spec.dhcp_start:
        assert details.ips[0].dhcp == ((spec.dhcp_start, spec.dhcp_end),)
    assert spec.name in result.summary()


def test_create_without_start(open_host):
    mgr = open_host(host(networks=[]))
    result = networks.create_network(mgr, NewNetworkSpec("later", mode="isolated"), start=False)
    assert "not started" in result.summary()
    details = networks.network_info(mgr, "later")
    assert (details.active, details.persistent, details.autostart) == (False, True, False)


def test_failed_start_removes_the_definition(open_host, monkeypatch, fake_error):
    mgr = open_host(host(networks=[]))

    def refuse(self):
        raise fake_error(libvirt.VIR_ERR_INTERNAL_ERROR, "Cannot find dnsmasq binary")

    monkeypatch.setattr(libvirt.virNetwork, "create", refuse)
    with pytest.raises(VirtError, match="^network n was not created: Cannot find dnsmasq binary$"):
        networks.create_network(mgr, NewNetworkSpec("n", mode="isolated", cidr="10.9.0.1/24"))
    assert mgr.conn.listAllNetworks(0) == []


# --------------------------------------------------------------------------- DHCP range edit


def test_edit_dhcp_range_live_and_config(open_host):
    mgr = open_host(host())
    result = networks.set_dhcp_range(mgr, "default", "192.168.122.100", "192.168.122.199")
    assert (result.method, result.config, result.live) == ("update", True, True)
    assert result.old == ("192.168.122.2", "192.168.122.254")
    assert result.new == ("192.168.122.100", "192.168.122.199")
    assert dhcp_of(mgr, "default") == [("192.168.122.100", "192.168.122.199")]
    assert "live now" in result.summary()


def test_edit_dhcp_range_of_stopped_network_is_config_only(open_host):
    mgr = open_host(host())
    mgr.conn.networkLookupByName("default").destroy()
    result = networks.set_dhcp_range(mgr, "default", "192.168.122.10", "192.168.122.20")
    assert (result.config, result.live, result.reason) == (True, False, "network is not running")
    assert dhcp_of(mgr, "default") == [("192.168.122.10", "192.168.122.20")]


def test_edit_dhcp_range_of_transient_network_is_live_only(open_host, monkeypatch):
    """A transient network has no definition to save: only AFFECT_LIVE is asked for."""
    mgr = open_host(host())
    mgr.conn.networkCreateXML(network_xml("temp", mode=None, ip="10.5.0.1", dhcp=("10.5.0.2", "10.5.0.9")))
    flags_seen = []
    real = libvirt.virNetwork.update
    monkeypatch.setattr(libvirt.virNetwork, "update", lambda self, c, s, i, x, flags=0:
                        flags_seen.append(flags) or real(self, c, s, i, x, flags))
    result = networks.set_dhcp_range(mgr, "temp", "10.5.0.20", "10.5.0.30")
    assert (result.method, result.config, result.live) == ("update", False, True)
    assert set(flags_seen) == {libvirt.VIR_NETWORK_UPDATE_AFFECT_LIVE}
    assert dhcp_of(mgr, "temp") == [("10.5.0.20", "10.5.0.30")]


def test_edit_adds_a_range_where_there_was_none(open_host):
    mgr = open_host(host(networks=[network_xml("plain", mode=None, ip="10.4.0.1", prefix=24)]))
    result = networks.set_dhcp_range(mgr, "plain", "10.4.0.50", "10.4.0.60")
    assert result.old is None
    assert dhcp_of(mgr, "plain") == [("10.4.0.50", "10.4.0.60")]


def test_edit_falls_back_to_redefine_without_network_update(open_host, monkeypatch, fake_error):
    mgr = open_host(host())

    def unsupported(self, *args):
        raise fake_error(libvirt.VIR_ERR_NO_SUPPORT, "this function is not supported by the connection driver")

    monkeypatch.setattr(libvirt.virNetwork, "update", unsupported)
    defined = []
    real_define = libvirt.virConnect.networkDefineXML
    monkeypatch.setattr(libvirt.virConnect, "networkDefineXML",
                        lambda self, xml: defined.append(xml) or real_define(self, xml))
    result = networks.set_dhcp_range(mgr, "default", "192.168.122.30", "192.168.122.40")
    assert (result.method, result.config, result.live) == ("redefine", True, False)
    assert "restart the network" in result.reason
    # The running network keeps its old range (what "not live" means); the definition sent to
    # networkDefineXML has the new one. (The test driver does not show a pending definition,
    # not even after a destroy, so the XML it was given is checked.)
    assert dhcp_of(mgr, "default") == [("192.168.122.2", "192.168.122.254")]
    root = ET.fromstring(defined[0])
    assert [(r.get("start"), r.get("end")) for r in root.findall("ip/dhcp/range")] == [
        ("192.168.122.30", "192.168.122.40")]
    assert root.findtext("uuid") == mgr.conn.networkLookupByName("default").UUIDString()


def test_edit_restores_old_range_when_add_fails(open_host, monkeypatch, fake_error):
    mgr = open_host(host())
    real = libvirt.virNetwork.update
    seen = []

    def flaky(self, command, section, index, xml, flags=0):
        seen.append(command)
        if command == libvirt.VIR_NETWORK_UPDATE_COMMAND_ADD_FIRST and "192.168.122.77" in xml:
            raise fake_error(libvirt.VIR_ERR_INTERNAL_ERROR, "dnsmasq restart failed")
        return real(self, command, section, index, xml, flags)

    monkeypatch.setattr(libvirt.virNetwork, "update", flaky)
    with pytest.raises(VirtError, match="^set DHCP range of default: dnsmasq restart failed$"):
        networks.set_dhcp_range(mgr, "default", "192.168.122.77", "192.168.122.88")
    assert dhcp_of(mgr, "default") == [("192.168.122.2", "192.168.122.254")]
    assert seen.count(libvirt.VIR_NETWORK_UPDATE_COMMAND_ADD_FIRST) == 2


@pytest.mark.parametrize("net, start, end, message", [
    ("default", "192.168.123.2", "192.168.123.9", "outside 192.168.122.0/24"),
    ("default", "192.168.122.9", "192.168.122.2", "after its end"),
    ("default", "192.168.122.1", "192.168.122.9", "gateway address"),
    ("default", "192.168.122.0", "192.168.122.9", "network address"),
    ("default", "192.168.122.2", "192.168.122.255", "broadcast address"),
    ("default", "192.168.122.2", "192.168.122.254", "already uses"),
    ("isolated", "10.0.0.2", "10.0.0.9", "has no IPv4 address"),
    ("lan", "10.0.0.2", "10.0.0.9", "bridged onto a host bridge"),
    ("ghost", "10.0.0.2", "10.0.0.9", "no libvirt network named 'ghost'"),
])
def test_edit_dhcp_range_refusals_change_nothing(open_host, net, start, end, message):
    mgr = open_host(host())
    before = dhcp_of(mgr, "default")
    with pytest.raises(ValidationError, match=message):
        networks.set_dhcp_range(mgr, net, start, end)
    assert dhcp_of(mgr, "default") == before


# --------------------------------------------------------------------------- delete


def test_delete_reports_vms_and_removes_everything(open_host):
    mgr = open_host(host(domains=[domain_xml("web", nics=["default"]), domain_xml("db", state="shutoff", nics=["default"])]))
    assert networks.network_users(mgr, "default") == ("db", "web")
    result = networks.delete_network(mgr, "default")
    assert (result.destroyed, result.undefined, result.vms) == (True, True, ("db", "web"))
    assert "db, web" in result.summary()
    assert "default" not in [n.name() for n in mgr.conn.listAllNetworks(0)]


def test_delete_stopped_and_transient(open_host):
    mgr = open_host(host())
    mgr.conn.networkLookupByName("isolated").destroy()
    assert networks.delete_network(mgr, "isolated") == networks.NetworkDeleteResult("isolated", False, True, ())
    mgr.conn.networkCreateXML(network_xml("temp", mode=None))
    assert networks.delete_network(mgr, "temp") == networks.NetworkDeleteResult("temp", True, False, ())
    assert sorted(n.name() for n in mgr.conn.listAllNetworks(0)) == ["default", "lan"]
    with pytest.raises(ValidationError, match="no libvirt network named 'temp'"):
        networks.delete_network(mgr, "temp")
