"""Integration (tier 3): libvirt networks through OUR code (hyperconsole.virt.networks) on a real
libvirtd. Only an ISOLATED network is created: NAT/routed networks need iptables/nft rules,
which this host does not have, and there is no `default` network here. Everything is named
hcit-* so the session fixture removes leftovers even if a test dies half-way.
"""

from __future__ import annotations

import os

import shutil
import subprocess
import xml.etree.ElementTree as ET

import pytest

libvirt = pytest.importorskip("libvirt")

from hyperconsole.errors import ValidationError  # noqa: E402
from hyperconsole.virt import networks  # noqa: E402

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

NET = "hcit-net"
BRIDGE = "hcit-br0"  # ≤ 15 bytes, unlikely to clash with anything on the host


@pytest.fixture
def net_cleanup(libvirtd):
    """Destroy + undefine hcit-net whatever the test did (also on failure)."""
    yield
    conn = libvirtd.connect()
    try:
        try:
            net = conn.networkLookupByName(NET)
        except libvirt.libvirtError:
            return
        if net.isActive():
            net.destroy()
        if net.isPersistent():
            net.undefine()
    finally:
        conn.close()


def _ip_link_exists(name: str) -> bool:
    return subprocess.run(["ip", "link", "show", "dev", name], capture_output=True).returncode == 0


def _dhcp_range_in(xml: str) -> tuple[str, str]:
    rng = ET.fromstring(xml).find("ip/dhcp/range")
    assert rng is not None, xml
    return rng.get("start", ""), rng.get("end", "")


def test_isolated_network_lifecycle(manager, libvirtd, net_cleanup):
    # libvirt runs dnsmasq for a network with DHCP; without it the network cannot start.
    # A failing tier must say why (DESIGN.md: it fails, it does not skip).
    if shutil.which("dnsmasq", path="/usr/sbin:/usr/bin:/sbin:/bin") is None:
        pytest.fail("dnsmasq is not installed (Debian: dnsmasq-base); ./run must install it", pytrace=False)
    spec = networks.NewNetworkSpec(NET, mode="isolated", cidr="10.251.7.1/24", dhcp_start="10.251.7.100",
                                 dhcp_end="10.251.7.150", bridge=BRIDGE)
    result = networks.create_network(manager, spec, start=True, autostart=True)
    assert result.started and result.autostart

    details = networks.network_info(manager, NET)
    assert (details.active, details.autostart, details.persistent) == (True, True, True)
    assert details.forward_mode == "isolated"
    assert details.bridge == BRIDGE
    assert details.ips[0].cidr == "10.251.7.1/24"
    assert details.ips[0].dhcp == (("10.251.7.100", "10.251.7.150"),)
    assert _ip_link_exists(BRIDGE), "libvirt should have created the bridge device"

    # A second create with the same name or an overlapping subnet is refused before libvirt.
    with pytest.raises(ValidationError, match="already exists"):
        networks.create_network(manager, spec)
    with pytest.raises(ValidationError, match="overlaps"):
        networks.create_network(manager, networks.NewNetworkSpec("hcit-net2", mode="isolated", cidr="10.251.7.0/25"))

    # The real daemon has a lease database (the test driver does not).
    leases = networks.dhcp_leases(manager, NET)
    assert leases.supported, leases.reason
    assert leases.leases == ()

    # Edit the range while running: virNetworkUpdate on config AND live.
    edit = networks.set_dhcp_range(manager, NET, "10.251.7.20", "10.251.7.60")
    assert (edit.method, edit.config, edit.live) == ("update", True, True), edit
    assert edit.old == ("10.251.7.100", "10.251.7.150")
    conn = manager.conn
    net = conn.networkLookupByName(NET)
    assert _dhcp_range_in(net.XMLDesc(0)) == ("10.251.7.20", "10.251.7.60")  # live
    assert _dhcp_range_in(net.XMLDesc(libvirt.VIR_NETWORK_XML_INACTIVE)) == ("10.251.7.20", "10.251.7.60")

    # A bad range changes nothing.
    with pytest.raises(ValidationError, match="outside"):
        networks.set_dhcp_range(manager, NET, "10.251.8.2", "10.251.8.9")
    assert _dhcp_range_in(net.XMLDesc(0)) == ("10.251.7.20", "10.251.7.60")

    networks.set_network_autostart(manager, NET, False)
    networks.stop_network(manager, NET)
    details = networks.network_info(manager, NET)
    assert (details.active, details.autostart) == (False, False)
    assert not _ip_link_exists(BRIDGE)

    # Edit while stopped: only the definition can change, and the result says so.
    edit = networks.set_dhcp_range(manager, NET, "10.251.7.30", "10.251.7.40")
    assert (edit.config, edit.live) == (True, False)
    assert _dhcp_range_in(net.XMLDesc(libvirt.VIR_NETWORK_XML_INACTIVE)) == ("10.251.7.30", "10.251.7.40")

    networks.start_network(manager, NET)
    assert networks.network_info(manager, NET).active
    assert _dhcp_range_in(net.XMLDesc(0)) == ("10.251.7.30", "10.251.7.40")

    deleted = networks.delete_network(manager, NET)
    assert (deleted.destroyed, deleted.undefined, deleted.vms) == (True, True, ())
    assert NET not in [n.name() for n in conn.listAllNetworks(0)]
    assert not _ip_link_exists(BRIDGE)


def test_vm_on_network_is_reported_before_delete(manager, libvirtd, tiny_vm, net_cleanup):
    """A (defined, not running) VM with a NIC on hcit-net shows up in network_users, in the
    overview, and in the delete result."""
    # No address: libvirt needs no dnsmasq for it, only the bridge device.
    networks.create_network(manager, networks.NewNetworkSpec(NET, mode="isolated", bridge=BRIDGE), start=True)
    assert _ip_link_exists(BRIDGE)
    name = tiny_vm()
    conn = manager.conn
    dom = conn.lookupByName(name)
    root = ET.fromstring(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
    nic = ET.SubElement(root.find("devices"), "interface", type="network")
    ET.SubElement(nic, "source", network=NET)
    ET.SubElement(nic, "model", type="virtio")
    conn.defineXML(ET.tostring(root, encoding="unicode"))

    assert networks.network_users(manager, NET) == (name,)
    overview = networks.networks_overview(manager)
    assert [n.vms for n in overview.networks if n.name == NET] == [(name,)]
    result = networks.delete_network(manager, NET)
    assert result.vms == (name,)
    assert (result.destroyed, result.undefined) == (True, True)
    assert not _ip_link_exists(BRIDGE)


@pytest.fixture
def host_bridge():
    """A real, empty Linux bridge for a forward mode='bridge' network; removed afterwards."""
    name = "hcit-hbr0"
    subprocess.run(["ip", "link", "add", name, "type", "bridge"], check=True, capture_output=True)
    yield name
    subprocess.run(["ip", "link", "del", name], capture_output=True)


def test_network_bridged_onto_host_bridge(manager, host_bridge, net_cleanup):
    """The host bridge is found (interface driver or /sys), a missing one is refused."""
    with pytest.raises(ValidationError, match="no host bridge named 'hcit-nobr'"):
        networks.create_network(manager, networks.NewNetworkSpec(NET, mode="bridge", bridge="hcit-nobr"))
    with pytest.raises(ValidationError, match="may not be 'lo'"):
        networks.create_network(manager, networks.NewNetworkSpec(NET, mode="bridge", bridge="lo"))
    plain = next(n for n in sorted(os.listdir("/sys/class/net"))
                 if n != "lo" and not os.path.isdir(f"/sys/class/net/{n}/bridge"))
    with pytest.raises(ValidationError, match=f"host interface '{plain}' is not a bridge"):
        networks.create_network(manager, networks.NewNetworkSpec(NET, mode="bridge", bridge=plain))
    assert NET not in [n.name() for n in manager.conn.listAllNetworks(0)]
    result = networks.create_network(manager, networks.NewNetworkSpec(NET, mode="bridge", bridge=host_bridge))
    assert result.started
    details = networks.network_info(manager, NET)
    assert (details.forward_mode, details.bridge, details.active, details.ips) == ("bridge", host_bridge, True, ())
    with pytest.raises(ValidationError, match="bridged onto a host bridge"):
        networks.set_dhcp_range(manager, NET, "10.0.0.2", "10.0.0.9")
    networks.delete_network(manager, NET)
    assert _ip_link_exists(host_bridge)  # libvirt never owned it: deleting the network keeps it
