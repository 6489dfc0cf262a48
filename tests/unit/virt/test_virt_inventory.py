"""inventory: networks, pools, volumes, node info and who uses what, on the libvirt test driver."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import libvirt
import pytest

from hyperconsole.errors import ValidationError
from hyperconsole.virt import inventory, lifecycle, networks, pools, snapshots, volumes, xmlmodel
from tests.fixtures import GIB, domain_xml


def test_networks(open_host, host_xml):
    m = open_host(host_xml([]))
    nets = networks.list_networks(m)
    assert [(n.name, n.active, n.forward_mode) for n in nets] == [("default", True, "nat"), ("isolated", True, "isolated")]
    assert nets[0].ip_ranges == ("192.168.122.2-192.168.122.254",) and nets[0].bridge.startswith("virbr-")
    assert nets[0].persistent


def test_pools_and_volumes(open_host, host_xml):
    m = open_host(host_xml([]))
    found = pools.list_pools(m)
    assert [(p.name, p.kind, p.path, p.active) for p in found] == [
        ("default", "dir", "/var/lib/libvirt/images", True), ("iso", "dir", "/srv/iso", True)]
    vols = volumes.list_volumes(m, "default")
    assert [v.name for v in vols] == ["data.raw", "db.qcow2", "spare.qcow2", "web.qcow2"]
    web = vols[-1]
    assert (web.pool, web.path, web.format, web.capacity) == ("default", "/var/lib/libvirt/images/web.qcow2", "qcow2", 10 * GIB)
    assert vols[0].format == "raw"


def test_volumes_of_missing_or_inactive_pool(open_host, host_xml):
    m = open_host(host_xml([]))
    with pytest.raises(ValidationError, match="no storage pool named 'nope'"):
        volumes.list_volumes(m, "nope")
    m.conn.storagePoolLookupByName("iso").destroy()
    with pytest.raises(ValidationError, match="not active"):
        volumes.list_volumes(m, "iso")


def test_node_info_and_names(open_host, host_xml):
    m = open_host(host_xml([domain_xml("b", state="shutoff"), domain_xml("a [x]", state="running")],
                           memory_mib=8192, cpus=(1, 2, 4, 2)))
    node = inventory.node_info(m)
    assert (node.cpus, node.memory_kib, node.hypervisor) == (16, 8192 * 1024, "TEST")
    assert node.uri.startswith("test:///") and node.libvirt_version.count(".") == 2
    assert inventory.domain_names(m) == ["a [x]", "b"]
    assert inventory.domain_names(m.conn) == ["a [x]", "b"]


# --------------------------------------------------------------------------- item 15: hostile descriptions

ESC_DESCRIPTION = "pwned \x1b]0;title\x07 \x1b[2J"


def hostile_host(open_host, host_xml):
    """'web' (running, on network default, disk default/web.qcow2) gets a description holding ESC
    through the API, as an operator or a script can; libvirt then emits domain XML that no XML
    parser accepts. 'db' stays plain."""
    m = open_host(host_xml([
        domain_xml("web", state="running", nics=["default"], disks=[{"pool": "default", "volume": "web.qcow2"}]),
        domain_xml("db", state="shutoff", nics=["default", {"bridge": "br0"}],
                   disks=["/var/lib/libvirt/images/db.qcow2"]),
    ]))
    web = m.conn.lookupByName("web")
    flags = libvirt.VIR_DOMAIN_AFFECT_CONFIG | libvirt.VIR_DOMAIN_AFFECT_LIVE
    web.setMetadata(libvirt.VIR_DOMAIN_METADATA_DESCRIPTION, ESC_DESCRIPTION, None, None, flags)
    with pytest.raises(ET.ParseError):  # what every reader met before
        ET.fromstring(web.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
    return m


def test_one_unparseable_domain_hides_no_other_and_is_named(open_host, host_xml):
    m = hostile_host(open_host, host_xml)
    overview = networks.networks_overview(m)
    default = next(n for n in overview.networks if n.name == "default")
    assert default.vms == ("db", "web")
    assert overview.usage.on_bridge("br0") == ("db",)
    assert len(overview.usage.problems) == 1
    problem = overview.usage.problems[0]
    assert problem.startswith("web: ") and "\\x1b" in problem and "\x1b" not in problem and "\n" not in problem
    listing = volumes.open_volumes(m, "default")
    page = {v.name: v for v in listing.page(0, len(listing))}
    usage = inventory.usage(m)
    assert usage.users_of(page["web.qcow2"]) == ("web",)
    assert usage.users_of(page["db.qcow2"]) == ("db",)
    assert usage.running_users_of(page["web.qcow2"]) == ("web",)


def test_hostile_description_is_shown_escaped_and_the_vm_stays_usable(open_host, host_xml):
    m = hostile_host(open_host, host_xml)
    details = lifecycle.get_details(m, "web")
    assert details.name == "web" and details.disks[0].volume == "web.qcow2"
    assert "\x1b" not in details.description and details.description.startswith("pwned \\x1b]0;title")
    assert snapshots.list_snapshots(m, "web") == ()
    assert volumes.delete_volume(m, "default", "web.qcow2", force=True).users == ("web",)


def test_xml_that_still_does_not_parse_is_one_line():
    with pytest.raises(ValidationError, match="domain XML does not parse"):
        xmlmodel.parse("<domain><name>x</domain>", "domain")


def test_a_vm_that_cannot_be_read_at_all_is_never_guessed_unused(open_host, host_xml, monkeypatch):
    """XML that does not parse even with forbidden characters made visible: the VM is named,
    the others are still answered, and no destructive step assumes it uses nothing."""
    m = open_host(host_xml([
        domain_xml("web", state="shutoff", disks=[{"pool": "default", "volume": "web.qcow2"}], nics=["default"]),
        domain_xml("db", state="shutoff", disks=["/var/lib/libvirt/images/db.qcow2"], nics=["default"]),
    ]))
    real = libvirt.virDomain.XMLDesc
    monkeypatch.setattr(libvirt.virDomain, "XMLDesc",
                        lambda self, flags=0: "<domain><name>db</domain>" if self.name() == "db" else real(self, flags))
    overview = networks.networks_overview(m)
    assert next(n for n in overview.networks if n.name == "default").vms == ("web",)
    assert overview.usage.unread == {"db"}
    assert [p.split(": ")[:2] for p in overview.usage.problems] == [["db", "domain XML does not parse"]]
    with pytest.raises(ValidationError, match="cannot tell whether VM db uses default/spare.qcow2"):
        volumes.delete_volume(m, "default", "spare.qcow2")
    with pytest.raises(ValidationError, match="cannot tell whether VM db uses default/spare.qcow2"):
        volumes.resize_volume(m, "default", "spare.qcow2", "20G")
    assert "spare.qcow2" in m.conn.storagePoolLookupByName("default").listVolumes()
    result = lifecycle.delete(m, "web", remove_storage=True)
    assert result.removed_volumes == ()
    assert result.kept == ("vda: VM db could not be read, so its disks are unknown",)
    assert "web.qcow2" in m.conn.storagePoolLookupByName("default").listVolumes()
