"""inventory: networks, pools, volumes, node info on the libvirt test driver."""

from __future__ import annotations

import pytest

from hyperconsole.errors import ValidationError
from hyperconsole.virt import inventory, networks, pools, volumes
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
