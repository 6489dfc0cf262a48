"""Snapshots and details on the libvirt test driver."""

from __future__ import annotations

import pytest

from hyperconsole.errors import ValidationError
from hyperconsole.virt import lifecycle, snapshots
from hyperconsole.virt.errors import VirtError
from tests.fixtures import domain_xml

# root ─┬─ a ── a1
#       └─ b      (and a second root "solo"); listed children-first on purpose
TREE = [
    {"name": "root", "description": "fresh install", "creation_time": 100},
    {"name": "b", "parent": "root", "creation_time": 300},
    {"name": "a", "parent": "root", "creation_time": 200, "description": "before upgrade"},
    {"name": "a1", "parent": "a", "creation_time": 400, "current": True},
    {"name": "solo", "creation_time": 50},
]


def tree_host(host_xml, state="shutoff"):
    return host_xml([domain_xml("vm", state=state, snapshots=[TREE[0], TREE[2], TREE[1], TREE[3], TREE[4]])])


def test_list_snapshots_tree_order(open_host, host_xml):
    m = open_host(tree_host(host_xml))
    snaps = snapshots.list_snapshots(m, "vm")
    assert [(s.name, s.depth, s.parent) for s in snaps] == [
        ("solo", 0, None), ("root", 0, None), ("a", 1, "root"), ("a1", 2, "a"), ("b", 1, "root")]
    by = {s.name: s for s in snaps}
    assert by["a"].description == "before upgrade" and by["a1"].current and not by["a"].current
    assert by["root"].creation_time == 100 and by["root"].state == "shutoff"


def test_snapshot_tree_ignores_unknown_parent():
    snaps = [snapshots.SnapshotInfo("x", "gone", "", "", 1, False)]
    assert [(s.name, s.depth) for s in snapshots.snapshot_tree(snaps)] == [("x", 0)]


def test_create_snapshot_of_running_vm(open_host, host_xml):
    m = open_host(host_xml([domain_xml("vm", state="running")]))
    s1 = snapshots.create_snapshot(m, "vm", 'before "upgrade" ünï', "desc & <notes>")
    assert s1.name == 'before "upgrade" ünï' and s1.description == "desc & <notes>" and s1.state == "running"
    s2 = snapshots.create_snapshot(m, "vm", "second")
    assert s2.parent == s1.name and s2.current
    assert [s.name for s in snapshots.list_snapshots(m, "vm")] == [s1.name, "second"]


@pytest.mark.parametrize("bad", ["", "a/b", "new\nline", "x" * 65])
def test_create_snapshot_refuses_bad_names(open_host, host_xml, bad):
    m = open_host(host_xml([domain_xml("vm", state="running")]))
    with pytest.raises(ValidationError):
        snapshots.create_snapshot(m, "vm", bad)
    assert m.conn.lookupByName("vm").snapshotNum(0) == 0


def test_create_snapshot_refuses_taken_name(open_host, host_xml):
    m = open_host(tree_host(host_xml))
    with pytest.raises(ValidationError, match="already has a snapshot"):
        snapshots.create_snapshot(m, "vm", "a")


def test_revert_snapshot(open_host, host_xml):
    m = open_host(host_xml([domain_xml("vm", state="shutoff")]))
    lifecycle.start(m, "vm")
    snapshots.create_snapshot(m, "vm", "running-one")  # state running
    lifecycle.force_off(m, "vm")
    snapshots.revert_snapshot(m, "vm", "running-one")
    dom = m.conn.lookupByName("vm")
    assert dom.isActive() == 1  # reverting to a running snapshot runs the VM again
    assert dom.snapshotCurrent(0).getName() == "running-one"


def test_revert_unknown_snapshot(open_host, host_xml):
    m = open_host(tree_host(host_xml))
    with pytest.raises(ValidationError, match="no snapshot named 'nope'"):
        snapshots.revert_snapshot(m, "vm", "nope")


def test_delete_snapshot_reparents_children(open_host, host_xml):
    m = open_host(tree_host(host_xml))
    snapshots.delete_snapshot(m, "vm", "a")
    snaps = {s.name: s for s in snapshots.list_snapshots(m, "vm")}
    assert "a" not in snaps and snaps["a1"].parent == "root" and snaps["a1"].depth == 1


def test_delete_snapshot_with_children(open_host, host_xml):
    m = open_host(tree_host(host_xml))
    snapshots.delete_snapshot(m, "vm", "root", with_children=True)
    assert [s.name for s in snapshots.list_snapshots(m, "vm")] == ["solo"]


def test_details_include_snapshots_disks_nics(open_host, host_xml):
    m = open_host(host_xml([domain_xml(
        "vm", state="running", description="the <web> & db",
        disks=[{"pool": "default", "volume": "web.qcow2"}, {"device": "cdrom", "pool": "iso", "volume": "debian.iso"}],
        nics=["default", {"bridge": "br0", "mac": "52:54:00:00:00:01", "model": "e1000"}],
        snapshots=[TREE[0]])]))
    d = lifecycle.get_details(m, "vm")
    assert d.name == "vm" and d.description == "the <web> & db" and d.firmware == "bios"
    assert [(x.target, x.device, x.source, x.readonly) for x in d.disks] == [
        ("vda", "disk", "default/web.qcow2", False), ("sdb", "cdrom", "iso/debian.iso", True)]
    assert [(n.kind, n.source, n.model) for n in d.nics] == [("network", "default", "virtio"), ("bridge", "br0", "e1000")]
    assert d.nics[1].mac == "52:54:00:00:00:01" and d.nics[0].target  # running: tap device known
    assert [s.name for s in d.snapshots] == ["root"]


def test_details_of_missing_vm(open_host, host_xml):
    m = open_host(host_xml([]))
    with pytest.raises(VirtError):
        lifecycle.get_details(m, "nope")


def test_details_addresses_from_leases(open_host, host_xml):
    """The test driver invents one lease per NIC (first address of the network); real hosts
    report DHCP leases of libvirt networks only. A shut-off VM has none."""
    m = open_host(host_xml([domain_xml("on", state="running", nics=["default"]),
                            domain_xml("off", state="shutoff", nics=["default"])]))
    (nic,) = lifecycle.get_details(m, "on").nics
    assert len(nic.addresses) == 1 and nic.addresses[0].startswith("192.168.122.")
    (nic,) = lifecycle.get_details(m, "off").nics
    assert nic.addresses == ()
