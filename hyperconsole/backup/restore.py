"""Restore a VM from its backed-up XML, NVRAM and disk extents, and check that it boots.

`VmRestorer` creates one new volume per disk (qcow2 where the original was qcow2, raw
otherwise), sized to the disk's virtual size, and writes only the extents it is given through a
writable `qemu-nbd` on the new volume — holes are never written, so the new volume stays sparse.
`finish()` then defines the VM: as a new VM (new name, UUID, MACs, NVRAM file — the clone's
identity rules) or in place over the original, which must be shut off and whose disks are
replaced only once every byte has been written to the new volumes. Until `finish()` returns,
leaving the `with` block removes everything created: nothing half-restored stays.

`boot_check` starts a VM and waits for a sign of life: a guest-agent ping where an agent
channel is configured, or any output on its serial console (a libvirt console stream).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
import xml.etree.ElementTree as ET
from contextlib import ExitStack
from pathlib import Path

import libvirt
import libvirt_qemu

from hyperconsole import names, safefs
from hyperconsole.backup.nbd import MAX_REQUEST
from hyperconsole.backup.source import backed_up_disks, has_agent, serve
from hyperconsole.errors import HyperconsoleError, ValidationError
from hyperconsole.virt import errors as verrors
from hyperconsole.virt import xmlmodel
from hyperconsole.virt.calls import Target, calling, find, split
from hyperconsole.virt.clone import clone_volume_name, fresh_identity
from hyperconsole.virt.domains import DiskInfo, lookup, name_free, parse_disk, state_of
from hyperconsole.virt.pools import active_pool
from hyperconsole.virt.volumes import build_volume_xml, delete_quietly, disk_volumes, free_name

log = logging.getLogger(__name__)


class RestoreError(HyperconsoleError):
    """A restore or boot check failed (one line); nothing half-restored was left."""


class VolumeWriter:
    """DiskWriter onto a new volume through a writable qemu-nbd; `bytes_written` counts data."""

    def __init__(self, target: str, path: str, fmt: str, directory: Path) -> None:
        self.target = target
        self.bytes_written = 0
        self._stack = ExitStack()
        self._client = serve(self._stack, directory, target, path, fmt, read_only=False)
        self.closed = False

    def write(self, offset: int, data: bytes) -> None:
        view = memoryview(data)
        for at in range(0, len(view), MAX_REQUEST):
            self._client.write(offset + at, view[at:at + MAX_REQUEST])  # type: ignore[arg-type]
        self.bytes_written += len(data)

    def close(self) -> None:
        if not self.closed:
            self._client.flush()
            self.closed = True
            self._stack.close()

    def abort(self) -> None:
        self.closed = True
        self._stack.close()


def _original_pool(conn, manager, el: ET.Element, d: DiskInfo) -> libvirt.virStoragePool:
    """The pool the backed-up disk lived in: its pool volume's pool, else the active pool whose
    directory holds the file. Raises ValidationError when neither exists any more."""
    [dv] = disk_volumes(conn, ET.fromstring(f"<domain><devices>{ET.tostring(el, encoding='unicode')}"
                                            "</devices></domain>"))
    if dv.pool is not None:
        return active_pool(conn, manager, dv.pool.name(), f"disk {d.target}")
    folder = os.path.dirname(d.path)
    with calling(manager, "list storage pools"):
        for pool in conn.listAllStoragePools(libvirt.VIR_CONNECT_LIST_STORAGE_POOLS_ACTIVE):
            if (ET.fromstring(pool.XMLDesc(0)).findtext("target/path") or "").rstrip("/") == folder:
                return pool
    raise ValidationError(f"the pool of disk {d.target} ({d.source}) no longer exists", hint="choose a pool")


class VmRestorer:
    """Context manager; see the module docstring. `sizes` (target → virtual size), when the
    caller knows them up front, lets the pool check happen before anything is created; it is
    made again per disk in `disk()` either way."""

    def __init__(self, target: Target, xml: str, nvram: bytes | None, *, as_name: str | None,
                 pool: str | None, in_place: bool, strip_nics: bool = False,
                 sizes: dict[str, int] | None = None) -> None:
        self._conn, self._manager = conn, manager = split(target)
        self._root = xmlmodel.parse(xml, "domain")
        self._nvram = nvram
        self._strip_nics = strip_nics
        self._in_place = in_place
        self.original = self._root.findtext("name") or ""
        if in_place == (as_name is not None):
            raise ValidationError("restore either as a new VM (give a name) or in place over the original")
        if in_place:
            self.name = self.original
            uuid = self._root.findtext("uuid") or ""
            found = find(manager, f"look up {self.original}", lambda: conn.lookupByUUIDString(uuid),
                         libvirt.VIR_ERR_NO_DOMAIN) if uuid else None
            if found is not None and state_of(found).is_active:
                raise ValidationError(f"{self.original} is running: shut it down before restoring over it")
            if found is None:
                name_free(conn, manager, self.original)  # a different VM took the name meanwhile
        else:
            self.name = names.vm_name(as_name)
            name_free(conn, manager, self.name)
        disks, _skipped = backed_up_disks(self._root)
        elements = {parse_disk(el).target: el for el in self._root.findall("devices/disk")}
        self._disks = {d.target: (d, elements[d.target]) for d in disks}
        chosen = active_pool(conn, manager, names.pool_name(pool)) if pool else None
        self._pools = {t: chosen or _original_pool(conn, manager, el, d) for t, (d, el) in self._disks.items()}
        self._planned: dict[str, int] = {}
        self._free: dict[str, int] = {}
        for t, size in (sizes or {}).items():
            self._reserve(t, size)
        self._planned.clear()
        self._created: list[libvirt.virStorageVol] = []
        self._writers: dict[str, tuple[VolumeWriter, libvirt.virStorageVol]] = {}
        self._dir: Path | None = None  # qemu-nbd sockets, made with the first disk
        self._defined: libvirt.virDomain | None = None
        self._done = False

    # ------------------------------------------------------------------ volumes
    def _reserve(self, target: str, size: int) -> None:
        """Refuse a disk the pool cannot hold, counting the disks already planned into it."""
        if target not in self._disks:
            raise ValidationError(f"the backup of {self.original} has no disk {target!r}")
        pool = self._pools[target]
        pname = pool.name()
        if pname not in self._free:
            with calling(self._manager, f"read pool {pname}"):
                pool.refresh(0)
                _state, capacity, _allocation, available = pool.info()
            self._free[pname] = available if capacity > 0 else 1 << 62
        self._planned[pname] = self._planned.get(pname, 0) + size
        if self._planned[pname] > self._free[pname]:
            raise ValidationError(f"restoring {self.original} needs {names.human_size(self._planned[pname])}; "
                                  f"pool {pname!r} has {names.human_size(self._free[pname])} free")

    def disk(self, target: str, virtual_size: int) -> VolumeWriter:
        """A new volume for disk `target`; write its data extents, then close it."""
        if target in self._writers:
            raise ValidationError(f"disk {target} given twice")
        self._reserve(target, virtual_size)
        d, _el = self._disks[target]
        pool = self._pools[target]
        fmt = "qcow2" if d.format == "qcow2" else "raw"
        old = os.path.basename(d.volume or d.path) or f"{self.original}-{target}.{fmt}"
        with calling(self._manager, f"create a volume for {target}"):
            vol_name = free_name(pool, clone_volume_name(old, self.original, self.name, target))
            vol = pool.createXML(build_volume_xml(vol_name, virtual_size, fmt), 0)
            self._created.append(vol)
            path = vol.path()
        if self._dir is None:
            self._dir = Path(tempfile.mkdtemp(prefix="hc-restore-"))
        writer = VolumeWriter(target, path, fmt, self._dir)
        self._writers[target] = (writer, vol)
        return writer

    # ------------------------------------------------------------------ define
    def _point_disks(self) -> None:
        for target, (writer, vol) in self._writers.items():
            _d, el = self._disks[target]
            writer.close()
            src = el.find("source")
            if src is None:
                src = ET.SubElement(el, "source")
            for attr in ("file", "dev", "pool", "volume"):
                src.attrib.pop(attr, None)
            if el.get("type") == "volume":
                src.set("pool", vol.storagePoolLookupByVolume().name())
                src.set("volume", vol.name())
            else:
                el.set("type", "file")
                src.set("file", vol.path())
            driver = el.find("driver")
            if driver is not None:
                driver.set("type", "qcow2" if self._disks[target][0].format == "qcow2" else "raw")

    def finish(self) -> str:
        """Define the restored VM; returns its name. Raises RestoreError, VirtError."""
        missing = sorted(set(self._disks) - set(self._writers))
        if missing:
            raise RestoreError(f"the backup holds no data for disk {', '.join(missing)} of {self.original}")
        root = self._root
        with calling(self._manager, f"restore {self.name}"):
            self._point_disks()
            if self._strip_nics:
                devices = root.find("devices")
                for nic in root.findall("devices/interface"):
                    devices.remove(nic)
            old_vols = self._replaced_volumes() if self._in_place else []
        if not self._in_place:
            nvram_el = root.find("os/nvram")
            fresh_identity(root, self.name)
            if self._nvram is not None and nvram_el is not None and (nvram_el.text or "").strip():
                # a new variable store beside the original's, holding the backed-up variables
                nvram_el.text = str(Path(nvram_el.text.strip()).with_name(f"{self.name}_VARS.fd"))
                root.find("os").append(nvram_el)
        with calling(self._manager, f"define {self.name}"):
            dom = self._conn.defineXML(xmlmodel.to_string(root))
        if self._in_place:
            self._done = True  # the VM now uses the new volumes: they stay whatever follows
            problems = delete_quietly(old_vols)
            if problems:
                log.error("restore of %s: old disks not removed: %s", self.name, "; ".join(problems))
        else:
            self._defined = dom
        if self._nvram is not None:
            try:
                self._write_nvram(dom)
            except OSError as exc:
                raise RestoreError(f"cannot write the NVRAM of {self.name}: {exc.strerror or exc}") from exc
        self._done = True
        return self.name

    def _replaced_volumes(self) -> list[libvirt.virStorageVol]:
        """The current definition's volumes that the restored disks replace (checked shut off)."""
        found = find(self._manager, f"look up {self.name}", lambda: self._conn.lookupByName(self.name),
                     libvirt.VIR_ERR_NO_DOMAIN)
        if found is None:
            return []
        if state_of(found).is_active:
            raise RestoreError(f"{self.name} was started during the restore; nothing was replaced")
        current = xmlmodel.parse(found.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE), "domain")
        return [dv.vol for dv in disk_volumes(self._conn, current)
                if dv.vol is not None and dv.disk.target in self._disks and not dv.disk.shared]

    def _write_nvram(self, dom: libvirt.virDomain) -> None:
        with calling(self._manager, f"read {self.name}"):
            path = (xmlmodel.parse(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE), "domain")
                    .findtext("os/nvram") or "").strip()
        if not path:
            log.warning("restore of %s: the VM has no NVRAM file; the saved variables were not restored", self.name)
            return
        safefs.ensure_dir(os.path.dirname(path), parents=True)
        safefs.atomic_write(path, self._nvram, 0o600)

    # ------------------------------------------------------------------ context
    def __enter__(self) -> "VmRestorer":
        return self

    def __exit__(self, *exc) -> None:
        try:
            if not self._done:
                for writer, _vol in self._writers.values():
                    writer.abort()
                if self._defined is not None:
                    try:
                        self._defined.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_NVRAM)
                    except libvirt.libvirtError as e:
                        log.error("restore of %s: could not undefine: %s", self.name, verrors.one_line(e))
                problems = delete_quietly(self._created)
                if problems:
                    log.error("restore of %s: could not remove new volumes: %s", self.name, "; ".join(problems))
        finally:
            if self._dir is not None:
                shutil.rmtree(self._dir, ignore_errors=True)


# --------------------------------------------------------------------------- boot check


def boot_check(target: Target, name: str, timeout: float) -> float:
    """Start VM `name` and wait for a sign of life: an answer to a guest-agent ping (where an
    agent channel is configured) or any byte on its serial console. Returns the seconds from
    start to that sign. The VM is left running; the caller stops or deletes it.
    Raises RestoreError (no sign of life in `timeout` seconds, or the VM stopped), VirtError."""
    conn, manager = split(target)
    dom = lookup(conn, manager, name)
    with calling(manager, f"start {name}"):
        agent = has_agent(xmlmodel.parse(dom.XMLDesc(0), "domain"))
        t0 = time.monotonic()
        dom.create()
    stream = conn.newStream(libvirt.VIR_STREAM_NONBLOCK)
    try:
        dom.openConsole(None, stream, libvirt.VIR_DOMAIN_CONSOLE_FORCE)
    except libvirt.libvirtError as exc:
        log.info("boot check of %s: no console: %s", name, verrors.one_line(exc))
        stream = None
    next_ping = t0
    try:
        while True:
            now = time.monotonic()
            # isActive is also what pumps the connection, so console data arrives without an event loop.
            with calling(manager, f"watch {name}"):
                if not dom.isActive():
                    raise RestoreError(f"{name} stopped {now - t0:.1f} s into the boot check")
            if stream is not None:
                got = stream.recv(4096)
                if isinstance(got, bytes) and got:
                    return time.monotonic() - t0
                if got == b"":
                    stream = None  # console closed
            if agent and now >= next_ping:
                next_ping = now + 1
                try:
                    libvirt_qemu.qemuAgentCommand(dom, '{"execute":"guest-ping"}', 1, 0)
                    return time.monotonic() - t0
                except libvirt.libvirtError:
                    pass
            if now - t0 > timeout:
                how = "guest agent or serial console" if agent else "serial console"
                raise RestoreError(f"{name} showed no sign of life on its {how} within {timeout:g} s")
            time.sleep(0.1)
    finally:
        if stream is not None:
            try:
                stream.abort()
            except libvirt.libvirtError:
                pass
