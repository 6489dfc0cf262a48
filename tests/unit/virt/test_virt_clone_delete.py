"""clone and delete on the libvirt test driver.

The test driver's createXMLFrom copies volume metadata only (no data), and its
undefineFlags rejects VIR_DOMAIN_UNDEFINE_NVRAM/CHECKPOINTS_METADATA (so the fallback path
is what runs here); real data copies and NVRAM removal are for the QEMU integration tier.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

import libvirt
import pytest

from hyperconsole.errors import ValidationError
from hyperconsole.virt import clone, lifecycle
from hyperconsole.virt.errors import VirtError
from tests.fixtures import domain_xml

IMAGES = "/var/lib/libvirt/images"


def volumes(m, pool="default"):
    return sorted(m.conn.storagePoolLookupByName(pool).listVolumes())


def web(name="web", state="shutoff", **kw):
    return domain_xml(
        name, state=state,
        disks=[{"pool": "default", "volume": "web.qcow2"},           # type=volume
               f"{IMAGES}/data.raw",                                  # type=file, in the pool
               {"device": "cdrom", "pool": "iso", "volume": "debian.iso"}],
        nics=["default", {"bridge": "br0"}], **kw)


def test_clone_copies_writable_volumes(open_host, host_xml):
    m = open_host(host_xml([web(snapshots=[{"name": "s"}])]))
    before = volumes(m)
    result = clone.clone(m, "web", "web [red]x")
    assert result.name == "web [red]x"
    assert result.volumes == ("default/web [red]x.qcow2", "default/web [red]x-vdb.raw")
    assert volumes(m) == sorted(before + ["web [red]x.qcow2", "web [red]x-vdb.raw"])
    assert volumes(m, "iso") == ["debian.iso"]
    src = m.conn.lookupByName("web")
    new = m.conn.lookupByName("web [red]x")
    assert new.UUIDString() == result.uuid != src.UUIDString()
    old_root, new_root = (ET.fromstring(d.XMLDesc(0)) for d in (src, new))
    macs = lambda r: [e.get("address") for e in r.findall("devices/interface/mac")]  # noqa: E731
    assert len(macs(new_root)) == 2 and not set(macs(new_root)) & set(macs(old_root))
    sources = [(d.get("device"), dict(d.find("source").attrib)) for d in new_root.findall("devices/disk")]
    assert sources == [
        ("disk", {"pool": "default", "volume": "web [red]x.qcow2"}),
        ("disk", {"file": f"{IMAGES}/web [red]x-vdb.raw"}),
        ("cdrom", {"pool": "iso", "volume": "debian.iso"}),  # shared, not copied
    ]
    pool = m.conn.storagePoolLookupByName("default")
    copy = pool.storageVolLookupByName("web [red]x.qcow2")
    assert copy.info()[1] == pool.storageVolLookupByName("web.qcow2").info()[1]
    assert new.snapshotNum(0) == 0  # snapshots are not cloned


def with_sysinfo_and_fixed_displays(xml: str) -> str:
    """A VM as virt-install makes it with --sysinfo (SMBIOS system UUID = its UUID) and displays
    on fixed ports, as an operator pins them for a firewall rule."""
    root = ET.fromstring(xml)
    system = ET.SubElement(ET.SubElement(root, "sysinfo", type="smbios"), "system")
    ET.SubElement(system, "entry", name="manufacturer").text = "hyperconsole"
    ET.SubElement(system, "entry", name="uuid").text = root.findtext("uuid")
    smbios = ET.SubElement(root.find("os"), "smbios", mode="sysinfo")
    assert smbios is not None
    devices = root.find("devices")
    ET.SubElement(devices, "graphics", type="vnc", port="5905", autoport="no", listen="127.0.0.1")
    ET.SubElement(devices, "graphics", type="spice", port="5906", tlsPort="5907", autoport="no")
    return ET.tostring(root, encoding="unicode")


def test_clone_gets_fresh_sysinfo_uuid_automatic_ports_and_new_macs(open_host, host_xml):
    m = open_host(host_xml([with_sysinfo_and_fixed_displays(web())]))
    original = m.conn.lookupByName("web")
    result = clone.clone(m, "web", "web-2")
    copy = ET.fromstring(m.conn.lookupByName("web-2").XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
    assert result.uuid != original.UUIDString()
    assert copy.findtext("uuid") == result.uuid
    assert copy.findtext("sysinfo/system/entry[@name='uuid']") == result.uuid
    assert copy.findtext("sysinfo/system/entry[@name='manufacturer']") == "hyperconsole"
    displays = [(g.get("type"), g.get("autoport"), g.get("port"), g.get("tlsPort")) for g in copy.findall("devices/graphics")]
    assert [(kind, auto) for kind, auto, _, _ in displays] == [("vnc", "yes"), ("spice", "yes")]
    assert all(port in (None, "-1") and tls in (None, "-1") for _, _, port, tls in displays), displays
    old_macs = {mac.get("address") for mac in ET.fromstring(original.XMLDesc(0)).findall("devices/interface/mac")}
    new_macs = {mac.get("address") for mac in copy.findall("devices/interface/mac")}
    assert len(new_macs) == 2 and not new_macs & old_macs
    # the original is untouched
    kept = ET.fromstring(original.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
    assert kept.findtext("sysinfo/system/entry[@name='uuid']") == original.UUIDString()
    assert [g.get("port") for g in kept.findall("devices/graphics")] == ["5905", "5906"]


def test_clone_picks_free_volume_names(open_host, host_xml, make_vol):
    m = open_host(host_xml([web()], extra_volumes=[make_vol("copy.qcow2")]))
    result = clone.clone(m, "web", "copy")
    assert result.volumes[0] == "default/copy-1.qcow2"


def test_clone_requires_shut_off(open_host, host_xml):
    m = open_host(host_xml([web(state="running")]))
    before = volumes(m)
    with pytest.raises(ValidationError, match="must be shut off"):
        clone.clone(m, "web", "web2")
    assert volumes(m) == before


@pytest.mark.parametrize("bad", ["a/b", "new\nline", "", "web"])
def test_clone_refuses_bad_or_taken_names(open_host, host_xml, bad):
    m = open_host(host_xml([web()]))
    with pytest.raises(ValidationError):
        clone.clone(m, "web", bad)
    assert len(m.conn.listAllDomains(0)) == 1


def test_clone_refuses_disk_outside_pools(open_host, host_xml):
    xml = domain_xml("loose", state="shutoff", disks=[{"pool": "default", "volume": "web.qcow2"}, "/srv/elsewhere/disk.img"])
    m = open_host(host_xml([xml]))
    before = volumes(m)
    with pytest.raises(ValidationError, match="cannot copy disk vdb.*/srv/elsewhere/disk.img is not a volume"):
        clone.clone(m, "loose", "loose2")
    assert volumes(m) == before


def test_clone_removes_copies_when_define_fails(open_host, host_xml, fake_error, monkeypatch):
    m = open_host(host_xml([web()]))
    before = volumes(m)

    def refuse(self, xml):
        raise fake_error(libvirt.VIR_ERR_XML_ERROR, "XML error: bad")

    monkeypatch.setattr(libvirt.virConnect, "defineXML", refuse)
    with pytest.raises(VirtError, match="define clone web2: XML error: bad"):
        clone.clone(m, "web", "web2")
    assert volumes(m) == before


def test_delete_with_storage(open_host, host_xml):
    other = domain_xml("other", state="shutoff", disks=[f"{IMAGES}/spare.qcow2"])
    vm = domain_xml("web", state="running", snapshots=[{"name": "s1"}],
                    disks=[{"pool": "default", "volume": "web.qcow2"},
                           {"pool": "default", "volume": "spare.qcow2"},    # also used by "other"
                           {"device": "cdrom", "pool": "iso", "volume": "debian.iso"},
                           "/srv/elsewhere/disk.img"])
    m = open_host(host_xml([vm, other]))
    result = lifecycle.delete(m, "web", remove_storage=True)
    assert result.destroyed and result.undefined
    assert result.removed_volumes == ("default/web.qcow2",)
    assert sorted(result.kept) == ["sdc: shared or read-only", "vdb: used by another VM",
                                   "vdd: /srv/elsewhere/disk.img is not a volume of any storage pool"]
    assert result.problems == ()
    assert "web.qcow2" not in volumes(m) and "spare.qcow2" in volumes(m)
    assert volumes(m, "iso") == ["debian.iso"]
    assert [d.name() for d in m.conn.listAllDomains(0)] == ["other"]
    assert "removed default/web.qcow2" in result.summary()


def test_delete_keeps_storage_by_default(open_host, host_xml):
    m = open_host(host_xml([web(managed_save=True, snapshots=[{"name": "s"}])]))
    before = volumes(m)
    result = lifecycle.delete(m, "web")
    assert not result.destroyed and result.undefined and result.removed_volumes == ()
    assert volumes(m) == before and m.conn.listAllDomains(0) == []


def test_delete_falls_back_when_driver_lacks_undefine_flags(open_host, host_xml, monkeypatch):
    m = open_host(host_xml([web(snapshots=[{"name": "s"}])]))
    tried = []
    real = libvirt.virDomain.undefineFlags

    def spy(self, flags=0):
        tried.append(flags)
        return real(self, flags)

    monkeypatch.setattr(libvirt.virDomain, "undefineFlags", spy)
    lifecycle.delete(m, "web")
    nvram = libvirt.VIR_DOMAIN_UNDEFINE_NVRAM
    assert tried[0] & nvram and not tried[-1] & nvram  # NVRAM refused by the test driver, then dropped
    assert tried[-1] & libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
    assert m.conn.listAllDomains(0) == []


def test_delete_transient_only_destroys(open_host, host_xml):
    m = open_host(host_xml([domain_xml("t", state="running", transient=True)]))
    result = lifecycle.delete(m, "t")
    assert result.destroyed and not result.undefined and m.conn.listAllDomains(0) == []
