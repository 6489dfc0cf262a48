"""Moving a VM to another host: a preflight that refuses up front, live migration with progress
and abort, and offline migration of a shut-off VM.

`preflight(source, target, name)` reads both hosts and returns a `MigrationPlan`, or raises
ValidationError with one line when the target lacks a network, bridge or pool the VM uses, the
VM's CPU is incompatible with the target's, or the target has too little free memory. It also
decides whether storage must be copied: a disk whose path the target's storage does not hold is
copied (non-shared disk migration), into the target's pool of the same name at the same path
(libvirt pre-creates it there). A path the target holds too is taken as shared storage unless its
size differs; libvirt then checks on the source that the file system really is shared, and its
"unsafe migration" answer becomes a refusal: a file of the target's own is never written over.

`migrate(source, target, plan, on_progress=…, cancel=…)`:
* live (the VM runs): one managed direct migration, VIR_MIGRATE_LIVE | PERSIST_DEST |
  UNDEFINE_SOURCE (+ NON_SHARED_DISK with the disks to copy), run on its own thread while the
  caller's thread reads `jobStats` (data remaining, rate, expected downtime) every `interval`
  and hands a `MigrationProgress` to `on_progress`; setting `cancel` aborts the job
  (`abortJob`) and the VM keeps running on the source;
* offline (shut off): each non-shared volume is copied through the storage API (a volume of the
  same name, format and size created in the target's pool, its bytes streamed across), the
  definition defined on the target, then undefined on the source. The source volumes are kept:
  removing data is the operator's decision.
"""

from __future__ import annotations

import threading
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Callable

import libvirt

from hyperconsole.errors import ValidationError
from hyperconsole.virt import domains, errors as verrors, inventory
from hyperconsole.virt.calls import Target, calling, fail, split
from hyperconsole.virt.domains import DiskInfo, parse_domain_xml
from hyperconsole.virt.errors import VirtError

PROGRESS_INTERVAL = 0.5
MEMORY_MARGIN_KIB = 64 * 1024  # what a QEMU process needs beyond the guest's memory
COPY_CHUNK = 1 << 20


@dataclass(frozen=True)
class DiskPlan:
    target: str  # the guest's device name (vda), as migrate_disks wants it
    path: str
    pool: str  # the source pool holding it ("" when no pool does)
    volume: str
    shared: bool  # the target already sees this path


@dataclass(frozen=True)
class MigrationPlan:
    vm: str
    uuid: str
    live: bool
    disks: tuple[DiskPlan, ...]
    memory_kib: int
    vcpus: int
    notes: tuple[str, ...] = ()  # checks that could not be made here, said to the operator

    @property
    def copies_storage(self) -> bool:
        return any(not d.shared for d in self.disks)

    @property
    def flags(self) -> int:
        flags = libvirt.VIR_MIGRATE_PERSIST_DEST | libvirt.VIR_MIGRATE_UNDEFINE_SOURCE
        if self.live:
            flags |= libvirt.VIR_MIGRATE_LIVE
            if self.copies_storage:
                flags |= libvirt.VIR_MIGRATE_NON_SHARED_DISK
        return flags


@dataclass(frozen=True)
class MigrationProgress:
    elapsed_ms: int = 0
    data_total: int = 0
    data_processed: int = 0
    data_remaining: int = 0
    rate_bps: int = 0  # memory + disk bytes per second
    downtime_ms: int | None = None  # expected (while running) or measured (at the end)
    phase: str = "running"

    @property
    def percent(self) -> float | None:
        return 100.0 * self.data_processed / self.data_total if self.data_total else None

    @classmethod
    def from_stats(cls, stats: dict, phase: str = "running") -> "MigrationProgress":
        return cls(
            elapsed_ms=int(stats.get("time_elapsed", 0)), data_total=int(stats.get("data_total", 0)),
            data_processed=int(stats.get("data_processed", 0)), data_remaining=int(stats.get("data_remaining", 0)),
            rate_bps=int(stats.get("memory_bps", 0)) + int(stats.get("disk_bps", 0)),
            downtime_ms=int(stats["downtime"]) if "downtime" in stats else None, phase=phase,
        )


@dataclass(frozen=True)
class MigrationResult:
    vm: str
    live: bool
    copied: tuple[str, ...]  # disk paths whose data was copied
    final: MigrationProgress | None = None
    kept_on_source: tuple[str, ...] = field(default=())  # volumes left on the source (offline copy)


# -- preflight ------------------------------------------------------------------------------------


def _host_uuid(conn: libvirt.virConnect) -> str:
    root = ET.fromstring(conn.getCapabilities())
    return (root.findtext("./host/uuid") or "").strip()


def _exists(call: Callable[[], object], missing: int) -> bool:
    try:
        call()
        return True
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == missing:
            return False
        raise


def _check_networks(dconn: libvirt.virConnect, details, live: bool) -> list[str]:
    notes = []
    for nic in details.nics:
        if nic.kind == "network" and nic.network:
            try:
                net = dconn.networkLookupByName(nic.network)
            except libvirt.libvirtError as exc:
                if exc.get_error_code() == libvirt.VIR_ERR_NO_NETWORK:
                    raise ValidationError(f"the target host has no network {nic.network!r} (NIC {nic.mac})") from None
                raise
            if live and not net.isActive():
                raise ValidationError(f"network {nic.network!r} is not running on the target host")
        elif nic.kind == "bridge" and nic.bridge:
            try:
                found = _exists(lambda b=nic.bridge: dconn.interfaceLookupByName(b), libvirt.VIR_ERR_NO_INTERFACE)
            except libvirt.libvirtError as exc:
                if not verrors.is_no_support(exc):
                    raise
                notes.append(f"bridge {nic.bridge}: the target cannot list its interfaces; not checked")
                continue
            bridges = {n.bridgeName() for n in dconn.listAllNetworks() if n.isActive()}
            if not found and nic.bridge not in bridges:
                raise ValidationError(f"the target host has no bridge {nic.bridge!r} (NIC {nic.mac})")
    return notes


def _disk_path(disk: DiskInfo) -> str:
    return disk.file or disk.dev


def _plan_disks(sconn, dconn, details, copy_storage: bool | None) -> tuple[DiskPlan, ...]:
    plans = []
    for disk in details.disks:
        if disk.device not in ("disk", "lun") or disk.readonly or disk.shareable:
            continue  # cdroms and shared disks are the operator's to provide on both sides
        if disk.kind == "network":
            continue  # network storage is shared by nature
        if disk.kind == "volume":
            raise ValidationError(f"disk {disk.target} names pool volume {disk.pool}/{disk.volume}: "
                                  "migrating such disks is not supported", hint="use a file disk")
        path = _disk_path(disk)
        if not path:
            continue
        try:
            vol = sconn.storageVolLookupByPath(path)
            pool, volume = vol.storagePoolLookupByVolume().name(), vol.name()
        except libvirt.libvirtError:
            pool, volume = "", ""
        shared = _exists(lambda p=path: dconn.storageVolLookupByPath(p), libvirt.VIR_ERR_NO_STORAGE_VOL)
        if shared and volume and dconn.storageVolLookupByPath(path).info()[1] != vol.info()[1]:
            # Same path, different size: the target's own file, not shared storage.
            raise ValidationError(f"the target host has its own file at {path} (another size); the storage is not shared",
                                  hint="remove or rename it there, then migrate again (its data is copied)")
        if not shared and copy_storage is False:
            raise ValidationError(f"the target host does not see disk {disk.target} ({path})",
                                  hint="allow copying the storage, or share the pool")
        if not shared:
            if not pool:
                raise ValidationError(f"disk {disk.target} ({path}) is in no storage pool, so it cannot be copied")
            try:
                dpool = dconn.storagePoolLookupByName(pool)
            except libvirt.libvirtError as exc:
                if exc.get_error_code() == libvirt.VIR_ERR_NO_STORAGE_POOL:
                    raise ValidationError(f"the target host has no storage pool {pool!r} for disk {disk.target}") from None
                raise
            if not dpool.isActive():
                raise ValidationError(f"storage pool {pool!r} is not running on the target host")
            dpath = (ET.fromstring(dpool.XMLDesc(0)).findtext("./target/path") or "").rstrip("/")
            spath = (ET.fromstring(sconn.storagePoolLookupByName(pool).XMLDesc(0)).findtext("./target/path") or "").rstrip("/")
            if dpath != spath:
                raise ValidationError(f"storage pool {pool!r} is at {dpath} on the target, {spath} here: "
                                      "the disk keeps its path, so both must agree")
        plans.append(DiskPlan(disk.target, path, pool, volume, shared))
    return tuple(plans)


def _cpu_check(sconn, dconn, root: ET.Element) -> list[str]:
    """Refuse when the target cannot run the VM's CPU. The live XML names the CPU the VM really
    got; host-passthrough is checked as the source host's CPU."""
    cpu = root.find("cpu")
    if cpu is not None and cpu.get("mode") in ("host-passthrough", "maximum"):
        host_cpu = ET.fromstring(sconn.getCapabilities()).find("./host/cpu")
        cpu_xml = ET.tostring(host_cpu, encoding="unicode") if host_cpu is not None else ""
    elif cpu is not None and cpu.find("model") is not None:
        cpu_xml = ET.tostring(cpu, encoding="unicode")
    else:
        return ["the VM names no CPU model; CPU compatibility not checked"]
    if not cpu_xml:
        return ["the source host reports no CPU; CPU compatibility not checked"]
    os_type = root.find("./os/type")
    arch = os_type.get("arch") if os_type is not None else None
    machine = os_type.get("machine") if os_type is not None else None
    try:
        result = dconn.compareHypervisorCPU(None, arch, machine, root.get("type"), cpu_xml, 0)
    except libvirt.libvirtError as exc:
        if not verrors.is_no_support(exc):
            raise VirtError.wrap("compare the VM's CPU with the target's", exc) from exc
        return ["the target cannot compare CPUs; CPU compatibility not checked"]
    if result == libvirt.VIR_CPU_COMPARE_INCOMPATIBLE:
        model = root.findtext("./cpu/model") or "host CPU"
        raise ValidationError(f"the target host's CPU cannot run this VM's CPU ({model})")
    return []


def check_memory(free_kib: int | None, need_kib: int, name: str) -> list[str]:
    """Refuse when the target's free memory cannot hold the VM (and its QEMU process)."""
    if free_kib is None:
        return ["the target does not report its free memory; not checked"]
    if free_kib < need_kib + MEMORY_MARGIN_KIB:
        raise ValidationError(f"the target host has {free_kib // 1024} MiB free; VM {name} needs {need_kib // 1024} MiB")
    return []


def preflight(source: Target, target: Target, name: str, *, offline: bool = False,
              copy_storage: bool | None = None) -> MigrationPlan:
    """Check that `name` can move from source to target and say how. Raises ValidationError
    (one line, nothing changed) or VirtError."""
    sconn, smanager, dom = domains.domain(source, name)
    dconn, dmanager = split(target)
    with calling(smanager, f"read VM {name}"):
        state = domains.state_of(dom)
        live = state.is_active
        root = ET.fromstring(dom.XMLDesc(0))
        details = parse_domain_xml(dom.XMLDesc(0))
        _st, max_mem, _mem, vcpus, _cpu = dom.info()
        persistent = bool(dom.isPersistent())
        source_uuid = _host_uuid(sconn)
    if live and offline:
        raise ValidationError(f"VM {name} is {state.label}; offline migration needs it shut off",
                              hint="shut it down first, or migrate it live")
    if not live and not persistent:
        raise ValidationError(f"VM {name} is neither running nor defined")
    with calling(dmanager, "read the target host"):
        if _host_uuid(dconn) == source_uuid and source_uuid:
            raise ValidationError("the source and target are the same host")
        if _exists(lambda: dconn.lookupByUUIDString(details.uuid), libvirt.VIR_ERR_NO_DOMAIN) or \
                _exists(lambda: dconn.lookupByName(name), libvirt.VIR_ERR_NO_DOMAIN):
            raise ValidationError(f"the target host already has a VM {name!r} (or one with its UUID)")
        notes = _check_networks(dconn, details, live)
        disks = _plan_disks(sconn, dconn, details, copy_storage)
        if live:
            notes += _cpu_check(sconn, dconn, root)
            notes += check_memory(inventory.free_memory_kib(dconn), max_mem, name)
    return MigrationPlan(name, details.uuid, live, disks, max_mem, vcpus, tuple(notes))


def check_driver(source: Target, plan: MigrationPlan) -> None:
    """Refuse up front (ValidationError) what the source's driver cannot do: libvirt's test driver
    has no migration API, so a live plan would fail only once started."""
    sconn, smanager = split(source)
    with calling(smanager, "read the source host"):
        driver = sconn.getType()
    if plan.live and driver.upper() == "TEST":
        raise ValidationError(f"VM {plan.vm} runs on libvirt's test driver, which cannot migrate a running VM",
                              hint="shut it off for an offline migration")


# -- migrating ------------------------------------------------------------------------------------


def _params(plan: MigrationPlan, migrate_uri: str | None) -> dict:
    params: dict = {}
    if migrate_uri:
        params[libvirt.VIR_MIGRATE_PARAM_URI] = migrate_uri
    copied = [d.target for d in plan.disks if not d.shared]
    if copied:
        params[libvirt.VIR_MIGRATE_PARAM_MIGRATE_DISKS] = copied
    return params


def migrate(source: Target, target: Target, plan: MigrationPlan, *,
            on_progress: Callable[[MigrationProgress], None] | None = None,
            cancel: threading.Event | None = None, interval: float = PROGRESS_INTERVAL,
            migrate_uri: str | None = None) -> MigrationResult:
    """Carry out a plan from `preflight`. Raises VirtError (one line) when libvirt refuses or the
    job was aborted; an aborted live migration leaves the VM running on the source."""
    if plan.live:
        return _migrate_live(source, target, plan, on_progress, cancel, interval, migrate_uri)
    return _migrate_offline(source, target, plan, on_progress, cancel)


def _migrate_live(source, target, plan, on_progress, cancel, interval, migrate_uri) -> MigrationResult:
    sconn, smanager, dom = domains.domain(source, plan.uuid)
    dconn, dmanager = split(target)
    done = threading.Event()
    outcome: dict = {}

    def run() -> None:
        try:
            dom.migrate3(dconn, _params(plan, migrate_uri), plan.flags)
        except libvirt.libvirtError as exc:
            outcome["error"] = exc
        finally:
            done.set()

    threading.Thread(target=run, name=f"migrate-{plan.vm}", daemon=True).start()
    aborted = False
    while not done.wait(interval):
        if cancel is not None and cancel.is_set() and not aborted:
            aborted = True
            try:
                dom.abortJob()
            except libvirt.libvirtError:
                pass  # the job may have just ended; the outcome says which
        if on_progress is not None:
            try:
                stats = dom.jobStats(0)
            except libvirt.libvirtError:
                continue
            if stats.get("type", libvirt.VIR_DOMAIN_JOB_NONE) != libvirt.VIR_DOMAIN_JOB_NONE:
                on_progress(MigrationProgress.from_stats(stats))
    error = outcome.get("error")
    if error is not None:
        _remove_copies(dconn, plan)
        if verrors.code(error) == libvirt.VIR_ERR_MIGRATE_UNSAFE:
            # A file at the disk's path on the target that is not the same storage (libvirt checks
            # on the source whether the file system is shared): never written over.
            paths = ", ".join(d.path for d in plan.disks if d.shared)
            raise ValidationError(f"the target host has its own file at {paths}; the storage is not shared",
                                  hint="remove or rename it there, then migrate again (its data is copied)") from error
        if aborted:
            raise VirtError(f"migration of {plan.vm} aborted; it keeps running on the source") from error
        raise fail(smanager, f"migrate {plan.vm}", error) from error
    final = None
    try:  # the completed job's figures are kept on the target's side
        new = dconn.lookupByUUIDString(plan.uuid)
        stats = new.jobStats(libvirt.VIR_DOMAIN_JOB_STATS_COMPLETED)
        final = MigrationProgress.from_stats(stats, phase="completed") if stats else None
    except libvirt.libvirtError:
        pass
    if final is not None and on_progress is not None:
        on_progress(final)
    return MigrationResult(plan.vm, True, tuple(d.path for d in plan.disks if not d.shared), final)


def _remove_copies(dconn: libvirt.virConnect, plan: MigrationPlan) -> None:
    """After a failed or aborted live migration: the volumes libvirt created on the target for
    the disks it was copying (they did not exist there before) go again."""
    for disk in plan.disks:
        if disk.shared:
            continue
        try:
            vol = dconn.storageVolLookupByPath(disk.path)
            vol.storagePoolLookupByVolume().refresh(0)
            dconn.storageVolLookupByPath(disk.path).delete(0)
        except libvirt.libvirtError:
            pass


def _copy_volume(sconn, dconn, disk: DiskPlan, on_bytes: Callable[[int, int], None],
                 cancel: threading.Event | None) -> None:
    svol = sconn.storagePoolLookupByName(disk.pool).storageVolLookupByName(disk.volume)
    dpool = dconn.storagePoolLookupByName(disk.pool)
    xml = ET.fromstring(svol.XMLDesc(0))
    new = ET.Element("volume")
    ET.SubElement(new, "name").text = disk.volume
    capacity = xml.find("capacity")
    ET.SubElement(new, "capacity", unit="bytes").text = str(svol.info()[1]) if capacity is None else \
        str(int(capacity.text or 0) * {"bytes": 1, "KiB": 1024, "MiB": 1 << 20, "GiB": 1 << 30}.get(capacity.get("unit", "bytes"), 1))
    fmt = xml.find("./target/format")
    if fmt is not None:
        ET.SubElement(ET.SubElement(new, "target"), "format", type=fmt.get("type", "raw"))
    dvol = dpool.createXML(ET.tostring(new, encoding="unicode"), 0)
    try:
        size = svol.info()[2] or svol.info()[1]
        down, up = sconn.newStream(0), dconn.newStream(0)
        svol.download(down, 0, 0, 0)
        dvol.upload(up, 0, 0, 0)
        sent = 0
        while True:
            if cancel is not None and cancel.is_set():
                down.abort()
                up.abort()
                raise VirtError(f"copy of {disk.path} aborted")
            chunk = down.recv(COPY_CHUNK)
            if isinstance(chunk, int) and chunk == -2:
                continue
            if not chunk:
                break
            up.send(chunk)
            sent += len(chunk)
            on_bytes(sent, size)
        down.finish()
        up.finish()
    except BaseException:
        try:
            dvol.delete(0)
        except libvirt.libvirtError:
            pass
        raise


def _migrate_offline(source, target, plan, on_progress, cancel) -> MigrationResult:
    sconn, smanager, dom = domains.domain(source, plan.uuid)
    dconn, dmanager = split(target)
    copied: list[DiskPlan] = []
    started = time.monotonic()

    def progress(sent: int, size: int) -> None:
        if on_progress is not None:
            on_progress(MigrationProgress(elapsed_ms=int(1000 * (time.monotonic() - started)), data_total=size,
                                          data_processed=sent, data_remaining=max(0, size - sent),
                                          rate_bps=int(sent / max(1e-3, time.monotonic() - started)), phase="copying"))

    try:
        with calling(dmanager, f"copy the disks of {plan.vm}"):
            for disk in plan.disks:
                if disk.shared:
                    continue
                _copy_volume(sconn, dconn, disk, progress, cancel)
                copied.append(disk)
        with calling(dmanager, f"define {plan.vm} on the target"):
            dconn.defineXML(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_MIGRATABLE | libvirt.VIR_DOMAIN_XML_SECURE))
    except BaseException:
        for disk in copied:  # nothing half-moved stays on the target
            try:
                dconn.storagePoolLookupByName(disk.pool).storageVolLookupByName(disk.volume).delete(0)
            except libvirt.libvirtError:
                pass
        raise
    with calling(smanager, f"undefine {plan.vm} on the source"):
        flags = libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
        dom.undefineFlags(flags)
    final = MigrationProgress(elapsed_ms=int(1000 * (time.monotonic() - started)), phase="completed")
    if on_progress is not None:
        on_progress(final)
    return MigrationResult(plan.vm, False, tuple(d.path for d in copied), final,
                           kept_on_source=tuple(f"{d.pool}/{d.volume}" for d in copied))
