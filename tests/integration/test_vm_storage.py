"""Integration (tier 3): clone and delete (with and without storage) through OUR code on a real
libvirtd + QEMU, checked on disk with qemu-img and through the pool API."""

from __future__ import annotations

import json
import os
import subprocess
import time
import xml.etree.ElementTree as ET

import pytest

libvirt = pytest.importorskip("libvirt")

from hyperconsole.errors import ValidationError  # noqa: E402
from hyperconsole.virt import clone, inventory, lifecycle, snapshots, volumes  # noqa: E402
from hyperconsole.virt.models import DomainState  # noqa: E402
from hyperconsole.virt.sampler import DomainSampler  # noqa: E402

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

MIB = 1024 * 1024


@pytest.fixture
def cleanup(libvirtd, hcit_pool):
    """Removes what a test made outside tiny_vm's bookkeeping (clones and their volumes)."""
    names: list[str] = []
    yield names
    conn = libvirtd.connect()
    try:
        for name in names:
            try:
                dom = conn.lookupByName(name)
                if dom.isActive():
                    dom.destroy()
                dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA)
            except libvirt.libvirtError:
                pass
        pool = conn.storagePoolLookupByName(hcit_pool[0])
        pool.refresh(0)
        for name in names:
            for vol in pool.listAllVolumes(0):
                if vol.name().startswith(name):
                    vol.delete(0)
    finally:
        conn.close()


def qemu_img_info(path: str) -> dict:
    out = subprocess.run(["qemu-img", "info", "-U", "--output=json", path],
                         capture_output=True, text=True, timeout=30, check=True).stdout
    return json.loads(out)


def disk_paths(manager, name: str) -> list[str]:
    return [d.source for d in lifecycle.get_details(manager, name).disks if d.device == "disk"]


def volume_names(manager, pool: str) -> set[str]:
    return {v.name for v in volumes.list_volumes(manager, pool)}


def exists(manager, name: str) -> bool:
    return name in inventory.domain_names(manager)


def test_clone_copies_the_disk_into_a_new_pool_volume(libvirtd, hcit_pool, tiny_vm, manager, cleanup):
    pool_name, pool_path = hcit_pool
    name = tiny_vm()
    new_name = f"{name}-clone"
    cleanup.append(new_name)
    [src_path] = disk_paths(manager, name)
    vols_before = volume_names(manager, pool_name)

    result = clone.clone(manager, name, new_name)

    assert result.name == new_name and exists(manager, new_name)
    conn = libvirtd.connect()
    try:
        assert result.uuid == conn.lookupByName(new_name).UUIDString()
        assert result.uuid != conn.lookupByName(name).UUIDString()
    finally:
        conn.close()
    assert len(result.volumes) == 1 and result.volumes[0].startswith(f"{pool_name}/")
    new_vol = result.volumes[0].split("/", 1)[1]
    assert volume_names(manager, pool_name) == vols_before | {new_vol}

    [clone_path] = disk_paths(manager, new_name)
    assert clone_path != src_path
    assert os.path.dirname(clone_path) == str(pool_path)
    assert os.path.basename(clone_path) == new_vol
    src, copy = qemu_img_info(src_path), qemu_img_info(clone_path)
    assert copy["format"] == "qcow2"
    assert copy["virtual-size"] == src["virtual-size"] == 16 * MIB
    assert "backing-filename" not in copy  # a full copy, not an overlay of the original
    [vol] = [v for v in volumes.list_volumes(manager, pool_name) if v.name == new_vol]
    assert (vol.format, vol.capacity, vol.path) == ("qcow2", 16 * MIB, clone_path)

    with pytest.raises(ValidationError):
        clone.clone(manager, name, new_name)  # name taken: refused before copying anything
    assert volume_names(manager, pool_name) == vols_before | {new_vol}

    # the clone is a working VM of its own
    sampler = DomainSampler(manager)
    lifecycle.start(manager, new_name)
    deadline = time.monotonic() + 10
    while True:
        states = {d.name: d.state for d in sampler.tick().domains.values()}
        if states.get(new_name) is DomainState.RUNNING or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert states[new_name] is DomainState.RUNNING
    assert states[name] is DomainState.SHUTOFF

    # delete with storage (running: forced off first) removes the domain and the volume file
    gone = lifecycle.delete(manager, new_name, remove_storage=True)
    assert gone.destroyed and gone.undefined
    assert gone.removed_volumes == (f"{pool_name}/{new_vol}",) and gone.problems == ()
    assert not exists(manager, new_name)
    assert not os.path.exists(clone_path)
    assert new_vol not in volume_names(manager, pool_name)
    # the original is untouched
    assert os.path.exists(src_path) and exists(manager, name)


def test_clone_refuses_a_running_vm(tiny_vm, manager, hcit_pool):
    name = tiny_vm(start=True)
    before = volume_names(manager, hcit_pool[0])
    with pytest.raises(ValidationError, match="shut off"):
        clone.clone(manager, name, f"{name}-clone")
    assert not exists(manager, f"{name}-clone")
    assert volume_names(manager, hcit_pool[0]) == before


def test_delete_without_storage_keeps_the_volume(tiny_vm, manager, hcit_pool):
    name = tiny_vm()
    [path] = disk_paths(manager, name)
    snapshots.create_snapshot(manager, name, "s1", "metadata must go with the VM")
    result = lifecycle.delete(manager, name, remove_storage=False)
    assert result.undefined and not result.destroyed
    assert result.removed_volumes == ()
    assert not exists(manager, name)
    assert os.path.exists(path)
    assert os.path.basename(path) in volume_names(manager, hcit_pool[0])
    assert qemu_img_info(path)["format"] == "qcow2"


def test_delete_with_storage_keeps_a_volume_another_vm_uses(libvirtd, tiny_vm, manager, hcit_pool, cleanup):
    """Two VMs on one volume: deleting one with storage must not pull the disk from the other."""
    name = tiny_vm()
    [path] = disk_paths(manager, name)
    conn = libvirtd.connect()
    try:
        xml = conn.lookupByName(name).XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
    finally:
        conn.close()
    twin = f"{name}-twin"
    cleanup.append(twin)
    root = ET.fromstring(xml)
    root.find("name").text = twin
    root.remove(root.find("uuid"))
    conn = libvirtd.connect()
    try:
        conn.defineXML(ET.tostring(root, encoding="unicode"))
    finally:
        conn.close()

    result = lifecycle.delete(manager, twin, remove_storage=True)
    assert result.removed_volumes == ()
    assert any("another VM" in k for k in result.kept), result.kept
    assert os.path.exists(path) and exists(manager, name) and not exists(manager, twin)


def test_a_vm_whose_xml_does_not_parse_hides_no_other(libvirtd, tiny_vm, manager, hcit_pool, capsys):
    """A description with ESC set through the API makes the real libvirtd emit domain XML that
    does not parse. Who uses which volume is still answered for every VM, the broken one named;
    `net bridge add`'s VM lookup warns instead of ending in a traceback."""
    from hyperconsole.cli.net import read_vm_nics
    from hyperconsole.config import Config

    hostile, plain = tiny_vm(), tiny_vm()
    conn = libvirtd.connect()
    try:
        dom = conn.lookupByName(hostile)
        dom.setMetadata(libvirt.VIR_DOMAIN_METADATA_DESCRIPTION, "x \x1b]0;owned\x07 \x1b[2J", None, None,
                        libvirt.VIR_DOMAIN_AFFECT_CONFIG)
        with pytest.raises(ET.ParseError):
            ET.fromstring(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
    finally:
        conn.close()

    usage = inventory.usage(manager)
    by_name = {v.name: v for v in volumes.list_volumes(manager, hcit_pool[0])}
    assert usage.users_of(by_name[f"{hostile}.qcow2"]) == (hostile,)
    assert usage.users_of(by_name[f"{plain}.qcow2"]) == (plain,)
    assert [p.split(":")[0] for p in usage.problems] == [hostile]
    assert "\\x1b" in usage.problems[0]

    assert read_vm_nics(Config(connections={"default": libvirtd.uri})) == []
    err = capsys.readouterr().err
    assert f"warning: VM {hostile}: " in err and "\x1b" not in err
