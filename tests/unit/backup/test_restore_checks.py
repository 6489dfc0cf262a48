"""VmRestorer's up-front refusals on libvirt's test driver (one host file per test): each is
one line and nothing is created."""

from __future__ import annotations

import libvirt
import pytest

from hyperconsole.backup.restore import VmRestorer
from hyperconsole.errors import ValidationError
from tests.fixtures import GIB, build_host_xml, domain_xml, pool_xml, test_uri, volume_xml

IMAGES = "/var/lib/libvirt/images"


@pytest.fixture
def host(tmp_path):
    conns = []

    def make(web_state: str = "shutoff"):
        xml = build_host_xml(
            domains=[
                domain_xml("web", web_state, disks=[f"{IMAGES}/web.qcow2",
                                                    {"device": "cdrom", "path": "/srv/iso/debian.iso"}],
                           nics=["default"]),
                domain_xml("db", "shutoff", disks=[f"{IMAGES}/db.qcow2"]),
                domain_xml("lost", "shutoff", disks=["/gone/lost.qcow2"]),
            ],
            pools=[pool_xml("default", IMAGES, volumes=[
                volume_xml(n, capacity=10 * GIB, path=f"{IMAGES}/{n}") for n in ("web.qcow2", "db.qcow2")])],
        )
        conn = libvirt.open(test_uri(tmp_path, xml))
        conns.append(conn)
        return conn

    yield make
    for c in conns:
        c.close()


def _xml(conn, name: str) -> str:
    return conn.lookupByName(name).XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE | libvirt.VIR_DOMAIN_XML_SECURE)


def _volumes(conn) -> list[str]:
    return sorted(conn.storagePoolLookupByName("default").listVolumes())


@pytest.mark.parametrize("kw, message", [
    ({"as_name": "db", "in_place": False}, "a VM named 'db' already exists"),
    ({"as_name": "bad/name", "in_place": False}, "VM name"),
    ({"as_name": None, "in_place": False}, "either as a new VM"),
    ({"as_name": "web2", "in_place": True}, "either as a new VM"),
    ({"as_name": "web2", "in_place": False, "pool": "nope"}, "no storage pool named 'nope'"),
    ({"as_name": "web2", "in_place": False, "sizes": {"vda": 1 << 60}}, r"needs .* pool 'default' has .* free"),
])
def test_refusals(host, kw, message):
    conn = host()
    before = _volumes(conn)
    with pytest.raises(ValidationError, match=message) as err:
        VmRestorer(conn, _xml(conn, "web"), None, pool=kw.pop("pool", None), **kw)
    assert "\n" not in str(err.value)
    assert _volumes(conn) == before and "web2" not in conn.listDefinedDomains()


def test_in_place_over_a_running_vm_is_refused(host):
    conn = host("running")
    with pytest.raises(ValidationError, match="web is running: shut it down"):
        VmRestorer(conn, _xml(conn, "web"), None, as_name=None, pool=None, in_place=True)


def test_the_original_pool_must_still_exist_unless_one_is_chosen(host):
    conn = host()
    with pytest.raises(ValidationError, match="the pool of disk vda .*/gone/lost.qcow2.* no longer exists"):
        VmRestorer(conn, _xml(conn, "lost"), None, as_name="lost2", pool=None, in_place=False)
    with VmRestorer(conn, _xml(conn, "lost"), None, as_name="lost2", pool="default", in_place=False) as r:
        with pytest.raises(ValidationError, match="has no disk 'hdc'"):
            r.disk("hdc", GIB)  # the cdrom is not restored: it is not the VM's own data
    assert _volumes(conn) == ["db.qcow2", "web.qcow2"]


def test_disks_planned_into_one_pool_are_counted_together(host):
    conn = host()
    _state, capacity, _alloc, available = conn.storagePoolLookupByName("default").info()
    xml = _xml(conn, "web")
    with pytest.raises(ValidationError, match="needs"):
        VmRestorer(conn, xml, None, as_name="web2", pool=None, in_place=False, sizes={"vda": available + 1})
    with VmRestorer(conn, xml, None, as_name="web2", pool=None, in_place=False, sizes={"vda": available}):
        pass


def test_a_pool_too_small_for_the_archive_is_refused_before_any_disk_is_read(host, tmp_path):
    """The archive's manifest gives the sizes up front: the refusal comes before the first volume
    (without it the per-disk check would refuse only once the disk's member is reached)."""
    import io

    from hyperconsole.backup import archive
    from tests.backup_local import FileDisk, FileVm, sparse_image

    conn = host()
    available = conn.storagePoolLookupByName("default").info()[3]
    image = sparse_image(tmp_path / "big.img", available + 1, {0: b"boot" * 1024})
    disk = FileDisk("vda", image)
    out = io.BytesIO()
    archive.write_archive(FileVm("web", [disk], xml=_xml(conn, "web")), out)
    disk.close()
    made = []

    def make(xml, nvram, sizes):
        made.append(VmRestorer(conn, xml, nvram, as_name="web2", pool=None, in_place=False, sizes=sizes))
        return made[-1]

    with pytest.raises(ValidationError, match=r"needs .* pool 'default' has .* free"):
        archive.restore_archive(io.BytesIO(out.getvalue()), make)
    assert made == []  # refused while the restorer was being made: before its first disk
    assert _volumes(conn) == ["db.qcow2", "web.qcow2"] and "web2" not in conn.listDefinedDomains()
