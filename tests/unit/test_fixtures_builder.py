"""The per-test host builders in tests/fixtures.py round-trip through libvirt's test driver."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

libvirt = pytest.importorskip("libvirt")

from tests.fixtures import (  # noqa: E402
    GIB,
    build_host_xml,
    domain_xml,
    network_xml,
    pool_xml,
    test_uri,
    volume_xml,
)

HOSTILE = ["web [red]x", "${evil}", 'quote"d', "café-ü", "a<b&c>'d"]


@pytest.fixture
def open_host(tmp_path):
    conns = []

    def _open(xml: str):
        conn = libvirt.open(test_uri(tmp_path, xml))
        conns.append(conn)
        return conn

    yield _open
    for c in conns:
        c.close()


@pytest.mark.parametrize(
    "state,expected",
    [("running", libvirt.VIR_DOMAIN_RUNNING), ("paused", libvirt.VIR_DOMAIN_PAUSED),
     ("shutoff", libvirt.VIR_DOMAIN_SHUTOFF), ("crashed", libvirt.VIR_DOMAIN_CRASHED)],
)
def test_state(open_host, state, expected):
    conn = open_host(build_host_xml(domains=[domain_xml("vm", state=state)]))
    assert conn.lookupByName("vm").state()[0] == expected


def test_unknown_state_rejected():
    with pytest.raises(ValueError):
        domain_xml("vm", state="sleeping")


def test_hostile_names_verbatim(open_host):
    conn = open_host(build_host_xml(
        domains=[domain_xml(n, description=n) for n in HOSTILE],
        networks=[network_xml('net "1" & <x>', None)],
        pools=[pool_xml("p${x}", "/p", [volume_xml('v"<&>.qcow2')])],
    ))
    assert sorted(d.name() for d in conn.listAllDomains()) == sorted(HOSTILE)
    for n in HOSTILE:
        assert conn.lookupByName(n).metadata(libvirt.VIR_DOMAIN_METADATA_DESCRIPTION, None) == n
    assert conn.listAllNetworks()[0].name() == 'net "1" & <x>'
    assert conn.storagePoolLookupByName("p${x}").listVolumes() == ['v"<&>.qcow2']


def test_resources_disks_nics_graphics_uuid(open_host):
    uuid = "0b7e5c52-1a0f-4a43-9d4a-6d3f0c1d2e3f"
    conn = open_host(build_host_xml(
        domains=[domain_xml(
            "vm", vcpus=3, memory_mib=1536, uuid=uuid, graphics="vnc",
            disks=["/img/a.qcow2", {"pool": "default", "volume": "b.qcow2"},
                   {"path": "/iso/x.iso", "device": "cdrom"}],
            nics=["default", {"bridge": "br0", "mac": "52:54:00:aa:bb:cc"}],
        )],
        networks=[network_xml("default", ip="192.168.122.1", dhcp=("192.168.122.2", "192.168.122.9"))],
        pools=[pool_xml("default", "/img", [volume_xml("b.qcow2", 10 * GIB)])],
    ))
    dom = conn.lookupByUUIDString(uuid)
    info = dom.info()
    assert (info[3], info[1]) == (3, 1536 * 1024)
    root = ET.fromstring(dom.XMLDesc())
    disks = root.findall("./devices/disk")
    assert [d.get("device") for d in disks] == ["disk", "disk", "cdrom"]
    assert disks[0].find("source").get("file") == "/img/a.qcow2"
    assert disks[1].find("source").get("volume") == "b.qcow2"
    assert disks[2].find("readonly") is not None
    nics = root.findall("./devices/interface")
    assert [n.get("type") for n in nics] == ["network", "bridge"]
    assert nics[1].find("mac").get("address") == "52:54:00:aa:bb:cc"
    assert nics[0].find("mac").get("address") != nics[1].find("mac").get("address")
    assert root.find("./devices/graphics").get("type") == "vnc"


def test_snapshot_tree_and_current(open_host):
    snaps = [
        dict(name="base", description="fresh install"),
        dict(name="a", parent="base", description="branch a"),
        dict(name="b", parent="base", current=True),
        dict(name="a2", parent="a"),
    ]
    conn = open_host(build_host_xml(domains=[domain_xml("vm", snapshots=snaps)]))
    dom = conn.lookupByName("vm")
    found = {s.getName(): s for s in dom.listAllSnapshots()}
    assert set(found) == {"base", "a", "b", "a2"}
    parents = {}
    for name, s in found.items():
        try:
            parents[name] = s.getParent().getName()
        except libvirt.libvirtError:
            parents[name] = None
    assert parents == {"base": None, "a": "base", "b": "base", "a2": "a"}
    assert dom.snapshotCurrent().getName() == "b"
    desc = ET.fromstring(found["base"].getXMLDesc()).findtext("description")
    assert desc == "fresh install"


def test_managed_save_and_transient(open_host):
    conn = open_host(build_host_xml(domains=[
        domain_xml("saved", state="shutoff", managed_save=True),
        domain_xml("temp", transient=True),
    ]))
    assert conn.lookupByName("saved").hasManagedSaveImage() == 1
    assert conn.lookupByName("temp").isPersistent() == 0


def test_pools_volumes_networks(open_host):
    conn = open_host(build_host_xml(
        pools=[pool_xml("default", "/var/lib/libvirt/images",
                        [volume_xml("a.qcow2", 20 * GIB, 5 * GIB), {"name": "b.raw", "fmt": "raw"}])],
        networks=[network_xml("default", ip="192.168.122.1", dhcp=("192.168.122.2", "192.168.122.9")),
                  network_xml("iso", None, ip="10.0.0.1"), network_xml("lan", "bridge", bridge="br0")],
    ))
    pool = conn.storagePoolLookupByName("default")
    assert sorted(pool.listVolumes()) == ["a.qcow2", "b.raw"]
    vol = pool.storageVolLookupByName("a.qcow2")
    assert vol.info()[1:] == [20 * GIB, 5 * GIB]
    assert vol.path() == "/var/lib/libvirt/images/a.qcow2"
    assert {n.name() for n in conn.listAllNetworks()} == {"default", "iso", "lan"}
    assert conn.networkLookupByName("lan").bridgeName() == "br0"
    assert ET.fromstring(conn.networkLookupByName("iso").XMLDesc()).find("forward") is None


def test_deterministic():
    def build():
        return build_host_xml(domains=[domain_xml("a", nics=["default"])],
                              networks=[network_xml("default")])
    assert build() == build()


def test_each_test_gets_its_own_host(open_host):
    """Changes on one file-backed connection do not leak into another one."""
    xml = build_host_xml(domains=[domain_xml("vm", state="running")])
    first = open_host(xml)
    first.lookupByName("vm").destroy()
    second = open_host(xml)
    assert second.lookupByName("vm").state()[0] == libvirt.VIR_DOMAIN_RUNNING


def test_demo_host_opens():
    from pathlib import Path
    demo = Path(__file__).resolve().parents[2] / "hyperconsole" / "demo" / "data" / "demo-host.xml"
    conn = libvirt.open("test://" + str(demo))
    try:
        states = {d.state()[0] for d in conn.listAllDomains()}
        assert len(conn.listAllDomains()) >= 14
        assert {libvirt.VIR_DOMAIN_RUNNING, libvirt.VIR_DOMAIN_PAUSED,
                libvirt.VIR_DOMAIN_SHUTOFF, libvirt.VIR_DOMAIN_CRASHED} <= states
        for name in ("web [red]x", "${evil}", 'quote"d', "café-ü"):
            conn.lookupByName(name)
        for pool in conn.listAllStoragePools():
            cap, alloc, avail = pool.info()[1:]
            assert alloc + avail == cap  # no unsigned wrap-around
    finally:
        conn.close()
