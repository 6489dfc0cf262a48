"""Domain XML: parsing into DomainDetails, deterministic builders (golden files), size edits."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from hyperconsole.errors import ValidationError
from hyperconsole.virt import create, domains, resources
from hyperconsole.virt.create import NewDomainSpec
from hyperconsole.virt.create import VolumeRef

FULL_XML = """<domain type='kvm' id='3'>
  <name>web [red]x</name>
  <uuid>11111111-2222-3333-4444-555555555555</uuid>
  <description>line one &amp; "two"</description>
  <memory unit='KiB'>2097152</memory>
  <vcpu placement='static' current='2'>4</vcpu>
  <os>
    <type arch='x86_64' machine='pc-q35-8.0'>hvm</type>
    <loader readonly='yes' type='pflash'>/run/libvirt/nix-ovmf/OVMF_CODE.fd</loader>
    <nvram>/var/lib/libvirt/qemu/nvram/web_VARS.fd</nvram>
  </os>
  <devices>
    <disk type='volume' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source pool='default' volume='web.qcow2'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <disk type='file' device='cdrom'>
      <driver name='qemu' type='raw'/>
      <source file='/srv/iso/debian.iso'/>
      <target dev='sda' bus='sata'/>
      <readonly/>
    </disk>
    <disk type='file' device='cdrom'>
      <target dev='sdb' bus='sata'/>
      <readonly/>
    </disk>
    <disk type='block' device='disk'>
      <source dev='/dev/vg/data'/>
      <target dev='vdb' bus='virtio'/>
    </disk>
    <interface type='network'>
      <mac address='52:54:00:aa:bb:cc'/>
      <source network='default'/>
      <target dev='vnet3'/>
      <model type='virtio'/>
    </interface>
    <interface type='bridge'>
      <mac address='52:54:00:aa:bb:cd'/>
      <source bridge='br0'/>
      <model type='e1000e'/>
    </interface>
    <graphics type='vnc' port='5901' autoport='yes' listen='0.0.0.0'>
      <listen type='address' address='0.0.0.0'/>
    </graphics>
    <graphics type='spice' autoport='yes'>
      <listen type='address' address='127.0.0.1'/>
    </graphics>
  </devices>
</domain>"""


def test_parse_full_domain():
    d = domains.parse_domain_xml(FULL_XML)
    assert (d.uuid, d.name, d.description) == ("11111111-2222-3333-4444-555555555555", "web [red]x",
                                                'line one & "two"')
    assert d.os_type == "hvm" and d.firmware == "uefi" and d.has_nvram
    vda, cd, empty, blk = d.disks
    assert (vda.target, vda.device, vda.bus, vda.pool, vda.volume, vda.source, vda.format, vda.readonly) == (
        "vda", "disk", "virtio", "default", "web.qcow2", "default/web.qcow2", "qcow2", False)
    assert (cd.device, cd.source, cd.readonly) == ("cdrom", "/srv/iso/debian.iso", True)
    assert empty.source == "" and empty.device == "cdrom"
    assert blk.source == "/dev/vg/data"
    n1, n2 = d.nics
    assert (n1.mac, n1.kind, n1.source, n1.model, n1.target) == ("52:54:00:aa:bb:cc", "network", "default", "virtio", "vnet3")
    assert (n2.kind, n2.source, n2.model, n2.target) == ("bridge", "br0", "e1000e", "")
    vnc, spice = d.graphics
    assert (vnc.kind, vnc.port, vnc.listen, vnc.autoport) == ("vnc", 5901, "0.0.0.0", True)
    assert "ssh -L 5901:127.0.0.1:5901" in vnc.tunnel_hint("root@host")
    assert (spice.kind, spice.port, spice.listen) == ("spice", None, "127.0.0.1")


@pytest.mark.parametrize("os_xml, firmware, nvram", [
    ("<os><type>hvm</type></os>", "bios", False),
    ("<os firmware='efi'><type>hvm</type></os>", "uefi", True),
    ("<os><type>hvm</type><loader>/usr/share/OVMF/OVMF_CODE.fd</loader></os>", "uefi", False),
    ("<os><type>hvm</type><loader>/usr/share/seabios/bios.bin</loader></os>", "bios", False),
    ("<os><type>hvm</type><nvram>/x/VARS.fd</nvram></os>", "uefi", True),
])
def test_firmware_detection(os_xml, firmware, nvram):
    d = domains.parse_domain_xml(f"<domain><name>a</name>{os_xml}</domain>")
    assert (d.firmware, d.has_nvram) == (firmware, nvram)


def test_parse_refuses_broken_xml():
    with pytest.raises(ValidationError):
        domains.parse_domain_xml("<domain><name>")


SPECS = {
    "bios-network-iso.xml": NewDomainSpec(
        name="web-01", vcpus=2, memory_mib=2048, disk=VolumeRef("default", "web-01.qcow2"),
        new_disk_gib=20, iso=VolumeRef("iso", "debian.iso"), network="default", domain_type="kvm"),
    "uefi-bridge-existing.xml": NewDomainSpec(
        name="db", vcpus=4, memory_mib=8192, disk=VolumeRef("default", "data.raw"), disk_format="raw",
        network="br0", network_kind="bridge", firmware="uefi", graphics="spice", domain_type="qemu",
        mac="52:54:00:01:02:03"),
    "hostile-names.xml": NewDomainSpec(
        name='web [red]x ${evil} quote"d <&> ünï 虚拟机', description="a & b <c> 'q' \"d\"\nsecond line",
        vcpus=1, memory_mib=64, disk=VolumeRef("p o'ol", 'vol "1".qcow2'), network=None, graphics="none",
        domain_type="test"),
}


@pytest.mark.parametrize("name", sorted(SPECS))
def test_build_domain_xml_matches_golden(name, golden):
    xml = create.build_domain_xml(SPECS[name])
    assert xml == create.build_domain_xml(SPECS[name])  # deterministic
    golden(name, xml)


def test_hostile_values_survive_round_trip():
    spec = SPECS["hostile-names.xml"]
    xml = create.build_domain_xml(spec)
    root = ET.fromstring(xml)  # would fail if anything had been concatenated unescaped
    assert root.findtext("name") == spec.name
    assert root.findtext("description") == spec.description
    src = root.find("devices/disk/source")
    assert (src.get("pool"), src.get("volume")) == ("p o'ol", 'vol "1".qcow2')
    assert domains.parse_domain_xml(xml).name == spec.name


def test_uefi_and_boot_order():
    root = ET.fromstring(create.build_domain_xml(SPECS["bios-network-iso.xml"]))
    assert root.find("os").get("firmware") is None
    assert [b.get("dev") for b in root.findall("os/boot")] == ["cdrom", "hd"]
    root = ET.fromstring(create.build_domain_xml(SPECS["uefi-bridge-existing.xml"]))
    assert root.find("os").get("firmware") == "efi"
    assert [b.get("dev") for b in root.findall("os/boot")] == ["hd"]
    assert root.find("devices/interface").get("type") == "bridge"
    assert root.find("devices/interface/source").get("bridge") == "br0"


INACTIVE = """<domain type='kvm'>
  <name>db</name>
  <uuid>11111111-2222-3333-4444-555555555555</uuid>
  <metadata>
    <libosinfo:libosinfo xmlns:libosinfo="http://libosinfo.org/xmlns/libvirt/domain/1.0">
      <libosinfo:os id="http://debian.org/debian/12"/>
    </libosinfo:libosinfo>
  </metadata>
  <memory unit='GiB'>2</memory>
  <currentMemory unit='KiB'>1048576</currentMemory>
  <vcpu placement='static' current='2'>4</vcpu>
  <os><type arch='x86_64'>hvm</type></os>
  <cpu mode='host-passthrough'><topology sockets='1' dies='1' cores='2' threads='2'/></cpu>
</domain>
"""


def test_limits_and_memory_units():
    assert resources.vcpu_limits(INACTIVE) == resources.VcpuLimits(2, 4)
    assert resources.memory_mib_of(INACTIVE) == 2048


def test_set_vcpus_within_maximum(golden):
    xml, raised = resources.set_vcpus(INACTIVE, 3)
    assert not raised
    assert resources.vcpu_limits(xml) == resources.VcpuLimits(3, 4)
    golden("edit-vcpus-3.xml", xml)
    xml, raised = resources.set_vcpus(INACTIVE, 4)
    assert not raised and 'current=' not in xml and resources.vcpu_limits(xml) == resources.VcpuLimits(4, 4)


def test_set_vcpus_raises_maximum_and_fixes_topology(golden):
    xml, raised = resources.set_vcpus(INACTIVE, 6)
    assert raised
    assert resources.vcpu_limits(xml) == resources.VcpuLimits(6, 6)
    topo = ET.fromstring(xml).find("cpu/topology")
    assert (topo.get("sockets"), topo.get("dies"), topo.get("cores"), topo.get("threads")) == ("6", "1", "1", "1")
    assert "libosinfo:os" in xml  # the namespace prefix is kept
    golden("edit-vcpus-6.xml", xml)


def test_set_vcpus_refuses_per_vcpu_layout():
    xml = INACTIVE.replace("</domain>", "<vcpus><vcpu id='0' enabled='yes'/></vcpus></domain>")
    with pytest.raises(ValidationError):
        resources.set_vcpus(xml, 8)


def test_set_memory(golden):
    xml = resources.set_memory(INACTIVE, 3072)
    root = ET.fromstring(xml)
    assert (root.findtext("memory"), root.find("memory").get("unit")) == ("3145728", "KiB")
    assert root.findtext("currentMemory") == "3145728"
    assert resources.memory_mib_of(xml) == 3072
    golden("edit-memory-3072.xml", xml)
