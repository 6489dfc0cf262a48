"""xmlmodel: one declaration per field serves reading and writing; output is deterministic and
checked against golden files (HYPERCONSOLE_REGEN_GOLDEN=1 rewrites them)."""

from __future__ import annotations

import pytest

from hyperconsole.errors import ValidationError
from hyperconsole.virt import pools, snapshots, volumes, xmlmodel
from hyperconsole.virt.domains import DiskInfo, parse_disk
from hyperconsole.virt.pools import NewPoolSpec

GIB = 1024**3


@pytest.mark.parametrize("name, text", [
    ("volume-qcow2.xml", lambda: volumes.build_volume_xml("web <1> & \"x\".qcow2", 10 * GIB, "qcow2")),
    ("pool-dir.xml", lambda: pools.build_pool_xml(NewPoolSpec("fast", "dir", "/srv/fast"))),
    ("pool-fs.xml", lambda: pools.build_pool_xml(NewPoolSpec("data", "fs", "/srv/data", device="/dev/sdb1"))),
    ("pool-logical.xml", lambda: pools.build_pool_xml(NewPoolSpec("vms", "logical", device="/dev/sdc", vg="vmvg"))),
    ("snapshot.xml", lambda: snapshots.snapshot_xml("before upgrade", "notes & <more>")),
])
def test_builders_match_golden(golden, name, text):
    golden(name, text())
    assert text() == text()  # same model, same bytes


def test_a_declared_field_reads_back_what_it_wrote():
    built = volumes.build_volume_xml("a.raw", 5 * GIB, "raw")
    vol = volumes.parse_volume("default", xmlmodel.parse(built))
    assert (vol.pool, vol.name, vol.format, vol.capacity, vol.allocation) == ("default", "a.raw", "raw", 5 * GIB, 0)
    disk = DiskInfo(kind="volume", device="cdrom", driver="qemu", format="raw", pool="iso", volume="d.iso",
                    target="sda", bus="sata", readonly=True)
    root = xmlmodel.write(disk, xmlmodel.parse("<disk/>"))
    assert parse_disk(root) == disk
    assert xmlmodel.to_string(root).splitlines()[1:4] == [
        '  <driver name="qemu" type="raw" />', '  <source pool="iso" volume="d.iso" />', '  <target dev="sda" bus="sata" />']


def test_sizes_are_read_in_their_unit_and_bad_numbers_fall_back_to_the_default():
    root = xmlmodel.parse("<volume><name>v</name><capacity unit='G'>2</capacity><allocation>x</allocation></volume>")
    vol = volumes.parse_volume("p", root)
    assert (vol.capacity, vol.allocation) == (2 * GIB, 0)


def test_parse_makes_forbidden_characters_visible_and_says_so():
    notes: list[str] = []
    root = xmlmodel.parse("<domain><description>a\x1b[2Jb\x07</description></domain>", "domain", notes)
    assert root.findtext("description") == "a\\x1b[2Jb\\x07"
    assert notes == ["its domain XML holds characters XML does not allow, shown as \\x07 \\x1b"]
    clean: list[str] = []
    xmlmodel.parse("<domain><description>tab\tok</description></domain>", "domain", clean)
    assert clean == []
    with pytest.raises(ValidationError, match="^network XML does not parse"):
        xmlmodel.parse("<network>", "network")
