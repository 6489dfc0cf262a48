"""Backups on the demo host: one job, a local restic repository under the demo state dir and a few
snapshots made at start-up when missing, so the Backups pane is alive on a fresh machine.

libvirt's test driver has no backup API and its disks are not files, so the demo's runs read
small local sparse images (one per test-driver disk, made on first use) the way a shut-off VM's
disks are read; restores define the copy in the test driver and write its disks next to them.
"""

from __future__ import annotations

import hashlib
import os
import random
import time
import xml.etree.ElementTree as ET
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import libvirt

from hyperconsole import paths, safefs
from hyperconsole.backup import jobs as jobs_mod
from hyperconsole.backup import runner
from hyperconsole.backup.restic import Repository
from hyperconsole.backup.source import Extent
from hyperconsole.errors import HyperconsoleError, ValidationError
from hyperconsole.nixos.store import FragmentStore

JOB = "demo-nightly"
DEMO_VMS = ("web-01", "web-02", "db-primary")
IMAGE_SIZE = 64 * 1024**2
NOTE = "demo: the test driver has no backup API; its VMs are read as shut-off VMs' disks are"


def base_dir() -> Path:
    return paths.demo_dir() / "backup"


class ImageDisk:
    """A DiskReader over a local sparse file; extents from SEEK_DATA/SEEK_HOLE."""

    def __init__(self, target: str, path: Path) -> None:
        self.target = target
        self.virtual_size = path.stat().st_size
        self._fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)

    def extents(self) -> list[Extent]:
        out, pos = [], 0
        while pos < self.virtual_size:
            try:
                data = os.lseek(self._fd, pos, os.SEEK_DATA)
            except OSError:
                data = self.virtual_size
            if data > pos:
                out.append(Extent(pos, data - pos, False))
            if data >= self.virtual_size:
                break
            hole = os.lseek(self._fd, data, os.SEEK_HOLE)
            out.append(Extent(data, hole - data, True))
            pos = hole
        return out

    def read(self, offset: int, length: int) -> bytes:
        return os.pread(self._fd, length, offset)

    def close(self) -> None:
        os.close(self._fd)


def image_path(vm: str, target: str) -> Path:
    return base_dir() / "disks" / f"{hashlib.sha256(vm.encode()).hexdigest()[:16]}-{target}.raw"


def _image(vm: str, target: str) -> Path:
    """The demo image of one disk: a 64 MiB sparse file with a few MiB of content of its own."""
    path = image_path(vm, target)
    safefs.ensure_private_dir(path.parent)
    if not path.exists():
        # Incompressible like real disk data, so the repository figures look like a real host's.
        rng = random.Random(f"{vm}/{target}")
        with open(path, "wb") as f:
            f.truncate(IMAGE_SIZE)
            for offset in (0, 8 * 1024**2, 40 * 1024**2):
                f.seek(offset)
                f.write(rng.randbytes(1024**2))
    return path


def _disk_targets(xml: str) -> list[str]:
    root = ET.fromstring(xml)
    return [t.get("dev", "") for d in root.findall("./devices/disk") if d.get("device", "disk") == "disk"
            for t in d.findall("target") if t.get("dev")]


_STATES = {libvirt.VIR_DOMAIN_RUNNING: "running", libvirt.VIR_DOMAIN_PAUSED: "paused"}


@dataclass
class DemoSource:
    name: str
    uuid: str
    state: str
    xml: str
    nvram: bytes | None
    disks: list
    quiesced: bool = False


@contextmanager
def open_vm(conn, name: str, *, quiesce: bool, scratch_dir: Path) -> Iterator[DemoSource]:
    try:
        dom = conn.lookupByName(name)
        xml = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE | libvirt.VIR_DOMAIN_XML_SECURE)
        state = _STATES.get(dom.state()[0], "shutoff")
        uuid = dom.UUIDString()
    except libvirt.libvirtError as exc:
        raise HyperconsoleError(f"cannot read VM {name}: {exc.get_error_message()}") from exc
    disks = [ImageDisk(target, _image(name, target)) for target in _disk_targets(xml)]
    try:
        yield DemoSource(name, uuid, state, xml, None, disks)
    finally:
        for disk in disks:
            disk.close()


class _Writer:
    def __init__(self, path: Path, size: int) -> None:
        self._fd = safefs.open_file(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.ftruncate(self._fd, size)

    def write(self, offset: int, data: bytes) -> None:
        os.pwrite(self._fd, data, offset)

    def close(self) -> None:
        os.close(self._fd)


class DemoRestorer:
    """The VmRestorer shape for the test driver: the copy's disks become local images, the
    domain is defined in the test driver with a new name, UUID and MACs (or replaces its XML)."""

    def __init__(self, conn, xml: str, nvram: bytes | None, *, as_name: str | None, pool: str | None,
                 in_place: bool, strip_nics: bool = False, sizes: dict[str, int] | None = None) -> None:
        self.conn, self.xml, self.in_place, self.strip_nics = conn, xml, in_place, strip_nics
        root = ET.fromstring(xml)
        self.name = root.findtext("name", "") if in_place else (as_name or "")
        if pool is not None:
            try:
                conn.storagePoolLookupByName(pool)
            except libvirt.libvirtError:
                raise ValidationError(f"no storage pool named {pool!r}") from None
        existing = set(conn.listDefinedDomains()) | {conn.lookupByID(i).name() for i in conn.listDomainsID()}
        if in_place:
            if self.name not in existing:
                raise ValidationError(f"VM {self.name} does not exist; restore it as a new VM (--as NAME)")
            if conn.lookupByName(self.name).isActive():
                raise ValidationError(f"VM {self.name} is running; shut it off before an in-place restore")
        elif self.name in existing:
            raise ValidationError(f"a VM named {self.name!r} already exists")
        self.written: list[tuple[str, Path]] = []
        self.done = False

    def __enter__(self) -> "DemoRestorer":
        return self

    def __exit__(self, *exc) -> None:
        if not self.done:
            for _, path in self.written:
                path.unlink(missing_ok=True)

    def disk(self, target: str, virtual_size: int) -> _Writer:
        path = image_path(self.name, target).with_suffix(".restoring")
        safefs.ensure_private_dir(path.parent)
        path.unlink(missing_ok=True)  # left by a restore that died
        self.written.append((target, path))
        return _Writer(path, virtual_size)

    def finish(self) -> str:
        root = ET.fromstring(self.xml)
        if not self.in_place:
            root.find("name").text = self.name  # type: ignore[union-attr]
            for el in root.findall("uuid"):
                root.remove(el)
            devices = root.find("devices")
            for nic in list(devices.findall("interface")) if devices is not None else []:
                if self.strip_nics:
                    devices.remove(nic)
                else:
                    for mac in nic.findall("mac"):
                        nic.remove(mac)
        try:
            self.conn.defineXML(ET.tostring(root, encoding="unicode"))
        except libvirt.libvirtError as exc:
            raise HyperconsoleError(f"cannot define {self.name}: {exc.get_error_message()}") from exc
        for target, path in self.written:
            os.replace(path, image_path(self.name, target))
        self.done = True
        return self.name


def boot_check(conn, name: str, timeout: float) -> float:
    """The test driver's "boot": start the domain; the time it took is the sign of life."""
    started = time.monotonic()
    try:
        conn.lookupByName(name).create()
    except libvirt.libvirtError as exc:
        raise HyperconsoleError(f"{name} did not start: {exc.get_error_message()}") from exc
    return time.monotonic() - started


def delete_vm(conn, name: str) -> None:
    try:
        dom = conn.lookupByName(name)
        if dom.isActive():
            dom.destroy()
        dom.undefine()
    except libvirt.libvirtError as exc:
        raise HyperconsoleError(f"cannot delete {name}: {exc.get_error_message()}") from exc
    for path in (base_dir() / "disks").glob(f"{hashlib.sha256(name.encode()).hexdigest()[:16]}-*.raw"):
        path.unlink(missing_ok=True)


def records() -> runner.Records:
    """The demo's own run records, beside its repository (never the host's shared ones)."""
    return runner.Records(base_dir() / "records")


def demo_job() -> jobs_mod.Job:
    return jobs_mod.Job(name=JOB, repository=str(base_dir() / "repo"), password_file=str(base_dir() / "restic.pw"),
                        vms=DEMO_VMS, schedule="*-*-* 02:30", retention=jobs_mod.Retention(daily=7, weekly=4),
                        restore_test="Sun 05:00")


def ensure(nixos_dir: str, conn) -> None:
    """The demo job in the demo's backups.nix, its password, repository and a few snapshots."""
    safefs.ensure_private_dir(base_dir())
    job = demo_job()
    store = FragmentStore(nixos_dir)
    if not jobs_mod.read_jobs(store):
        store.commit(jobs_mod.prepare(store, [job], f"add backup job {job.name}"))
    password = Path(job.password_file)
    if not password.exists():
        safefs.atomic_write(password, b"demo-password-not-secret\n", safefs.PRIVATE_FILE_MODE)
    repo = Repository(job.repository, job.password_file)
    if not (Path(job.repository) / "config").exists():
        repo.init()
    if repo.snapshots([f"hc-job={job.name}"]):
        return
    for days_ago in (3, 2, 1):
        when = time.strftime("%Y-%m-%d 02:30:00", time.localtime(time.time() - days_ago * 86400))
        runner.run_job(conn, job, open_vm=open_vm, when=when, forget=False, records=records())


def parts() -> dict:
    """What the console uses in place of the real VM side in the demo."""
    return {"open_vm": open_vm, "restorer": DemoRestorer, "boot_check": boot_check, "cleanup": delete_vm,
            "records": records(), "note": NOTE}
