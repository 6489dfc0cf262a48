"""create_domain and name validation on the libvirt test driver."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import libvirt
import pytest

from hyperconsole.errors import ValidationError
from hyperconsole.virt import create, lifecycle
from hyperconsole import names
from hyperconsole.virt.create import NewDomainSpec
from hyperconsole.virt.create import VolumeRef
from hyperconsole.virt.errors import VirtError
from tests.fixtures import domain_xml

HOSTILE = ["web [red]x", "${evil}", 'quote"d', "ünïcødé 虚拟机", "a'b<c>&d", "-x"]


def vols(m, pool="default"):
    return sorted(m.conn.storagePoolLookupByName(pool).listVolumes())


def spec(name="vm", **kw):
    base = dict(vcpus=2, memory_mib=1024, disk=VolumeRef("default", ""), new_disk_gib=10,
                iso=VolumeRef("iso", "debian.iso"), network="default")
    base.update(kw)
    return NewDomainSpec(name=name, **base)


@pytest.mark.parametrize("name", HOSTILE)
def test_create_with_hostile_names(open_host, host_xml, name):
    m = open_host(host_xml([]))
    result = create.create_domain(m, spec(name, description=f"for {name}"))
    dom = m.conn.lookupByUUIDString(result.uuid)
    assert dom.name() == name and result.name == name
    assert result.created_volume == f"default/{name}.qcow2" and f"{name}.qcow2" in vols(m)
    d = lifecycle.get_details(m, result.uuid)
    assert d.description == f"for {name}"
    assert [(x.device, x.source) for x in d.disks] == [("disk", f"default/{name}.qcow2"), ("cdrom", "iso/debian.iso")]
    assert [(n.kind, n.source) for n in d.nics] == [("network", "default")]


def test_create_picks_domain_type_from_capabilities(open_host, host_xml):
    m = open_host(host_xml([]))
    result = create.create_domain(m, spec())
    assert ET.fromstring(result.xml).get("type") == "test"  # the test driver only offers 'test'


def test_create_uefi_bridge_existing_volume_and_start(open_host, host_xml):
    m = open_host(host_xml([]))
    before = vols(m)
    result = create.create_domain(m, spec("db", disk=VolumeRef("default", "data.raw"), new_disk_gib=None, iso=None,
                                       network="br0", network_kind="bridge", firmware="uefi"), start_now=True)
    assert result.started and result.created_volume == "" and vols(m) == before
    root = ET.fromstring(m.conn.lookupByName("db").XMLDesc(0))
    assert root.find("os").get("firmware") == "efi"
    assert root.find("devices/disk/driver").get("type") == "raw"  # format read from the volume
    assert root.find("devices/interface/source").get("bridge") == "br0"
    assert m.conn.lookupByName("db").isActive() == 1


@pytest.mark.parametrize("name, message", [
    ("a/b", "may not contain '/'"),
    ("new\nline", "control characters"),
    ("tab\there", "control characters"),
    ("", "is empty"),
    ("x" * 65, "at most 64"),
    (" padded", "whitespace"),
    ("taken", "already exists"),
])
def test_bad_names_refused_before_any_change(open_host, host_xml, name, message):
    m = open_host(host_xml([domain_xml("taken", state="shutoff")]))
    before = vols(m)
    with pytest.raises(ValidationError, match=message):
        create.create_domain(m, spec(name))
    assert vols(m) == before and len(m.conn.listAllDomains(0)) == 1


def test_name_of_64_characters_is_fine():
    assert names.object_name("é" * 64) == "é" * 64


@pytest.mark.parametrize("changes, message", [
    ({"vcpus": 0}, "vCPUs must be"),
    ({"vcpus": 17}, "more than this host has"),
    ({"memory_mib": 32}, "at least 64 MiB"),
    ({"memory_mib": 1024 * 1024}, "more memory than this host has"),
    ({"new_disk_gib": 0}, "disk size"),
    ({"new_disk_gib": 10**6}, "disk size"),
    ({"disk": VolumeRef("nopool", ""), "new_disk_gib": 5}, "no storage pool named 'nopool'"),
    ({"disk": VolumeRef("default", "web.qcow2")}, "already has a volume 'web.qcow2'"),
    ({"disk": VolumeRef("default", "missing.qcow2"), "new_disk_gib": None}, "has no volume 'missing.qcow2'"),
    ({"disk": VolumeRef("default", "db.qcow2"), "new_disk_gib": None}, "already a disk of another VM"),
    ({"iso": VolumeRef("iso", "nope.iso")}, "boot ISO: pool 'iso' has no volume"),
    ({"network": "nonet"}, "no libvirt network named 'nonet'"),
    ({"network": "br9", "network_kind": "bridge"}, "no host bridge named 'br9'"),
    ({"network": "eth0", "network_kind": "bridge"}, "host interface 'eth0' is not a bridge"),
    ({"network": "br 0", "network_kind": "bridge"}, "bridge name .br 0."),
    ({"network_kind": "macvtap"}, "network kind"),
    ({"firmware": "coreboot"}, "bios or uefi"),
    ({"graphics": "rdp"}, "graphics must be"),
    ({"description": "bell\x07"}, "control characters"),
])
def test_bad_specs_refused_before_any_change(open_host, host_xml, changes, message):
    m = open_host(host_xml([domain_xml("user", state="shutoff", disks=[{"pool": "default", "volume": "db.qcow2"}])]))
    before = vols(m)
    with pytest.raises(ValidationError, match=message):
        create.create_domain(m, spec("new", **changes))
    assert vols(m) == before and len(m.conn.listAllDomains(0)) == 1


def test_inactive_pool_refused(open_host, host_xml):
    m = open_host(host_xml([]))
    m.conn.storagePoolLookupByName("default").destroy()
    with pytest.raises(ValidationError, match="not active"):
        create.create_domain(m, spec())


def test_failed_define_removes_new_volume(open_host, host_xml, fake_error, monkeypatch):
    m = open_host(host_xml([]))
    before = vols(m)

    def refuse(self, xml):
        raise fake_error(libvirt.VIR_ERR_XML_ERROR, "unsupported configuration: nope\nsecond line")

    monkeypatch.setattr(libvirt.virConnect, "defineXML", refuse)
    with pytest.raises(VirtError) as err:
        create.create_domain(m, spec())
    assert str(err.value) == "define vm: unsupported configuration: nope"
    assert vols(m) == before


def test_failed_start_keeps_defined_vm(open_host, host_xml, fake_error, monkeypatch):
    m = open_host(host_xml([]))

    def refuse(self):
        raise fake_error(libvirt.VIR_ERR_OPERATION_FAILED, "no OVMF firmware")

    monkeypatch.setattr(libvirt.virDomain, "create", refuse)
    with pytest.raises(VirtError, match="created vm but could not start it: no OVMF firmware"):
        create.create_domain(m, spec(), start_now=True)
    assert m.conn.lookupByName("vm").isActive() == 0
