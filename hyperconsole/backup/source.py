"""A consistent, read-only view of one VM for a backup: its inactive secure XML, its NVRAM, and
each disk as an NBD export read extent by extent (holes neither read nor sent).

A running or paused VM is read through libvirt's backup API in pull mode: libvirt starts an NBD
server on a unix socket in a per-run scratch directory, and QEMU copies a block to a scratch
file only before the guest overwrites it, so the export is the disk as it was when the job
started while the VM runs on its own disks throughout (never on an overlay). Guest file systems
are frozen through the agent just before the job starts and thawed right after. A shut-off VM's
disks are exported read-only by `qemu-nbd`.

Whatever happens — an exception, the VM shut down mid-read, the reader killed — nothing stale
stays: on exit the job is aborted, qemu-nbd stopped, the scratch directory removed; and a run
that was SIGKILLed is recognised by its released lock and cleaned by the next `open_vm` (or
`cleanup`): its libvirt job aborted, its qemu-nbd killed, its scratch removed.
"""

from __future__ import annotations

import ctypes
import fcntl
import logging
import os
import pwd
import signal
import subprocess
import time
import uuid as uuidlib
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import libvirt
import libvirt_qemu

from hyperconsole import safefs
from hyperconsole.backup.nbd import MAX_REQUEST, NbdClient, NbdError
from hyperconsole.errors import HyperconsoleError
from hyperconsole.virt import errors as verrors
from hyperconsole.virt import xmlmodel
from hyperconsole.virt.calls import Target, calling, split
from hyperconsole.virt.domains import XML_INACTIVE_SECURE, DiskInfo, lookup, parse_disk, state_of
from hyperconsole.virt.models import DomainState

log = logging.getLogger(__name__)

RUN_PREFIX = "hc-backup-"
AGENT_CHANNEL = "org.qemu.guest_agent.0"
AGENT_TIMEOUT = 5  # seconds for guest-ping: an agent that is configured but not running
EXPORT_TIMEOUT = 30.0  # seconds for an NBD export to appear
NBD_TIMEOUT = 120.0  # seconds one NBD request may take


class BackupSourceError(HyperconsoleError):
    """A VM cannot be read for a backup (one line)."""


@dataclass(frozen=True)
class Extent:
    offset: int
    length: int
    data: bool  # False: a hole / reads as zeros, not read and not sent


class DiskReader(Protocol):
    target: str
    virtual_size: int

    def extents(self) -> list[Extent]: ...

    def read(self, offset: int, length: int) -> bytes: ...


@dataclass
class VmSource:
    name: str
    uuid: str
    state: str  # "running" | "paused" | "shutoff"
    xml: str  # inactive, secure domain XML
    nvram: bytes | None
    disks: list[DiskReader]
    quiesced: bool
    notes: list[str] = field(default_factory=list)  # e.g. why it was not quiesced


class NbdDisk:
    """A DiskReader over one NBD export; `bytes_read` counts what was actually fetched."""

    def __init__(self, target: str, client: NbdClient) -> None:
        self.target = target
        self.virtual_size = client.size
        self.bytes_read = 0
        self._client = client
        self._extents: list[Extent] | None = None

    def extents(self) -> list[Extent]:
        if self._extents is None:
            self._extents = extents_of(self._client)
        return list(self._extents)

    def read(self, offset: int, length: int) -> bytes:
        if length > MAX_REQUEST:
            raise BackupSourceError(f"read of {length} bytes from {self.target}: at most {MAX_REQUEST} at a time")
        data = self._client.read(offset, length)
        self.bytes_read += length
        return data

    def close(self) -> None:
        self._client.close()


def extents_of(client: NbdClient) -> list[Extent]:
    """The export's allocation map from base:allocation, adjacent runs of one kind merged."""
    out: list[Extent] = []
    offset = 0
    while offset < client.size:
        for st in client.block_status(offset, client.size - offset):
            data = not st.zero
            if out and out[-1].data == data and out[-1].offset + out[-1].length == st.offset:
                out[-1] = Extent(out[-1].offset, out[-1].length + st.length, data)
            else:
                out.append(Extent(st.offset, st.length, data))
            offset = st.offset + st.length
    return out


# --------------------------------------------------------------------------- the run directory


class _Run:
    """`scratch_dir/hc-backup-<random>/`: socket(s), scratch files, qemu-nbd pids, and a lock
    held for the run's life. A run whose lock is free was killed: `cleanup` removes it."""

    def __init__(self, scratch_dir: Path, owner: tuple[int, int] | None) -> None:
        safefs.ensure_dir(scratch_dir, 0o755, parents=True)
        self.scratch_dir = scratch_dir
        self.path = scratch_dir / f"{RUN_PREFIX}{uuidlib.uuid4().hex[:12]}"
        os.mkdir(self.path, 0o700)
        self._lock = os.open(self.path / "lock", os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        fcntl.flock(self._lock, fcntl.LOCK_EX)
        if owner is not None:  # QEMU (libvirt-qemu) creates the NBD socket and scratch files here
            os.chown(self.path, *owner)
            blocked = _unreachable(scratch_dir, *owner)
            if blocked is not None:
                self.close()
                raise BackupSourceError(f"QEMU (uid {owner[0]}) cannot reach the scratch directory "
                                        f"{scratch_dir}: {blocked} is not searchable by it",
                                        hint="use a scratch directory whose parents are mode 0711 or 0755")

    def note(self, name: str, text: str) -> None:
        with open(self.path / name, "a") as f:
            f.write(f"{text}\n")

    def close(self) -> None:
        try:
            safefs.remove_tree(self.scratch_dir, self.path.name)
        finally:
            os.close(self._lock)


def _unreachable(path: Path, uid: int, gid: int) -> Path | None:
    """The first directory from / to `path` that user uid:gid (with its supplementary groups)
    cannot search, or None."""
    try:
        groups = set(os.getgrouplist(pwd.getpwuid(uid).pw_name, gid))
    except KeyError:
        groups = {gid}
    if uid == 0:
        return None
    for folder in [*reversed(path.resolve().parents), path.resolve()]:
        st = os.stat(folder)
        bit = 0o100 if st.st_uid == uid else 0o010 if st.st_gid in groups else 0o001
        if not st.st_mode & bit:
            return folder
    return None


def _held(path: Path) -> bool:
    """True while a live run holds the lock of run directory `path`."""
    try:
        fd = os.open(path / "lock", os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return False  # gone, or killed before it took the lock
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


def _stale_runs(scratch_dir: Path) -> list[Path]:
    """Run directories whose lock nobody holds (their run was killed)."""
    try:
        entries = sorted(scratch_dir.iterdir())
    except FileNotFoundError:
        return []
    return [p for p in entries if p.name.startswith(RUN_PREFIX) and not p.is_symlink() and p.is_dir()
            and not _held(p)]


def _ours_and_dead(socket_path: str | None) -> bool:
    """A backup job exporting into one of our run directories (whatever scratch directory held
    it) whose run is no longer alive: the directory is gone or its lock is free."""
    if not socket_path:
        return False
    run = Path(socket_path).parent
    return run.name.startswith(RUN_PREFIX) and not _held(run)


def _clean_runs(conn, scratch_dir: Path) -> list[str]:
    """Remove killed runs' directories, after aborting their VM's job and killing their qemu-nbd."""
    done = []
    for path in _stale_runs(scratch_dir):
        vm = (path / "vm").read_text().strip() if (path / "vm").is_file() else ""
        try:
            dom = conn.lookupByUUIDString(vm) if vm else None
        except libvirt.libvirtError:
            dom = None
        if dom is not None and _ours_and_dead(_job_socket(dom)):
            _end_job(dom)
            done.append(f"aborted the backup job of {dom.name()} left by a killed run")
        for pid in _read_pids(path):
            if _is_our_qemu_nbd(pid, path):
                try:
                    os.kill(pid, signal.SIGKILL)
                    done.append(f"killed qemu-nbd {pid} left by a killed run")
                except ProcessLookupError:
                    pass
        safefs.remove_tree(scratch_dir, path.name)
        done.append(f"removed {path}")
    return done


def cleanup(target: Target, scratch_dir: str | os.PathLike[str]) -> list[str]:
    """End everything killed runs left: their directories in `scratch_dir` (with their qemu-nbd
    processes), and every libvirt backup job exporting into a run directory that no live run
    holds (also one whose directory is gone, e.g. removed with its scratch directory). Live runs
    are left alone. Returns one line per thing cleaned."""
    conn, manager = split(target)
    scratch_dir = Path(scratch_dir)
    with calling(manager, "clean up killed backups"):
        done = _clean_runs(conn, scratch_dir)
        for dom in conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE):
            if _ours_and_dead(_job_socket(dom)):
                _end_job(dom)
                done.append(f"aborted the backup job of {dom.name()} left by a killed run")
    for line in done:
        log.info("backup cleanup: %s", line)
    return done


def _read_pids(path: Path) -> list[int]:
    try:
        return [int(x) for x in (path / "pids").read_text().split() if x.isdigit()]
    except OSError:
        return []


def _is_our_qemu_nbd(pid: int, run: Path) -> bool:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return bool(argv) and argv[0].endswith(b"qemu-nbd") and any(str(run).encode() in a for a in argv)


# --------------------------------------------------------------------------- libvirt backup job


def _job_socket(dom: libvirt.virDomain) -> str | None:
    """The NBD socket path of the domain's backup job, None when it has none."""
    try:
        text = dom.backupGetXMLDesc(0)
    except libvirt.libvirtError:
        return None
    server = ET.fromstring(text).find("server")
    return server.get("socket") if server is not None else None


def _end_job(dom: libvirt.virDomain, wait: float = 15.0) -> None:
    """Abort the domain's backup job and wait until libvirt says it is gone. Never raises: a
    VM that stopped, or a job already ended, is what we want anyway."""
    try:
        dom.abortJob()
    except libvirt.libvirtError as exc:
        log.debug("abort backup job of %s: %s", dom.name(), verrors.one_line(exc))
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        try:
            dom.backupGetXMLDesc(0)
        except libvirt.libvirtError:
            return
        time.sleep(0.1)
    log.error("backup job of %s still present %.0f s after abort", dom.name(), wait)


def backup_xml(socket_path: Path, disks: list[tuple[str, Path]], skipped: list[str]) -> str:
    """`<domainbackup mode='pull'>`: an NBD server on a unix socket, one export per backed-up
    disk (named by target) with its scratch file; the other disks `backup='no'`."""
    root = ET.Element("domainbackup", mode="pull")
    ET.SubElement(root, "server", transport="unix", socket=str(socket_path))
    disks_el = ET.SubElement(root, "disks")
    for target, scratch in disks:
        el = ET.SubElement(disks_el, "disk", name=target, backup="yes", type="file", exportname=target)
        ET.SubElement(el, "scratch", file=str(scratch))
    for target in skipped:
        ET.SubElement(disks_el, "disk", name=target, backup="no")
    return xmlmodel.to_string(root)


def has_agent(root: ET.Element) -> bool:
    return any(t.get("name") == AGENT_CHANNEL for t in root.findall("devices/channel/target"))


def _freeze(dom: libvirt.virDomain, root: ET.Element, notes: list[str]) -> bool:
    """Freeze the guest's file systems when an agent channel is configured and answers."""
    if not has_agent(root):
        notes.append("not quiesced: no guest agent channel")
        return False
    try:
        libvirt_qemu.qemuAgentCommand(dom, '{"execute":"guest-ping"}', AGENT_TIMEOUT, 0)
        dom.fsFreeze(None, 0)
        return True
    except libvirt.libvirtError as exc:
        notes.append(f"not quiesced: guest agent: {verrors.one_line(exc)}")
        return False


def _thaw(dom: libvirt.virDomain) -> None:
    try:
        dom.fsThaw(None, 0)
    except libvirt.libvirtError as exc:
        log.error("thaw of %s failed: %s", dom.name(), verrors.one_line(exc))


def _dac_owner(live: ET.Element) -> tuple[int, int] | None:
    """uid:gid QEMU runs as, from the live XML's DAC label ('+64055:+64055')."""
    for label in live.findall("seclabel[@model='dac']/label"):
        uid, _, gid = (label.text or "").partition(":")
        if uid.lstrip("+").isdigit() and gid.lstrip("+").isdigit():
            return int(uid.lstrip("+")), int(gid.lstrip("+"))
    return None


def backed_up_disks(root: ET.Element) -> tuple[list[DiskInfo], list[str]]:
    """(disks to back up, targets skipped): cdroms, floppies, read-only, shareable and empty
    disks are not the VM's own data."""
    keep: list[DiskInfo] = []
    skip: list[str] = []
    for el in root.findall("devices/disk"):
        d = parse_disk(el)
        if d.target:
            if d.shared or not d.source:
                skip.append(d.target)
            else:
                keep.append(d)
    return keep, skip


def _connect(path: Path, export: str, alive=lambda: True) -> NbdClient:
    """Connect once the export answers (the server may still be starting)."""
    deadline = time.monotonic() + EXPORT_TIMEOUT
    while True:
        try:
            return NbdClient(str(path), export, timeout=NBD_TIMEOUT)
        except NbdError:
            if time.monotonic() > deadline or not alive():
                raise
            time.sleep(0.05)


def _pull(stack: ExitStack, dom, live: ET.Element, run: _Run, quiesce: bool,
          notes: list[str]) -> tuple[list[NbdDisk], bool]:
    disks, skipped = backed_up_disks(live)
    name = dom.name()
    running = _job_socket(dom)
    if _ours_and_dead(running):
        _end_job(dom)  # left by a run that was killed
    elif running is not None or _job_socket(dom) is not None:
        raise BackupSourceError(f"{name} already has a backup job running", hint="wait for it or abort it")
    sock = run.path / "nbd.sock"
    xml = backup_xml(sock, [(d.target, run.path / f"{d.target}.scratch") for d in disks], skipped)
    if not quiesce:
        notes.append("not quiesced: not asked to")
    elif state_of(dom) == DomainState.PAUSED:
        notes.append("not quiesced: the VM is paused")  # a paused guest's agent cannot answer
    quiesced = quiesce and state_of(dom) != DomainState.PAUSED and _freeze(dom, live, notes)
    try:
        try:
            dom.backupBegin(xml, None, 0)
        except libvirt.libvirtError as exc:
            raise BackupSourceError(f"cannot start the backup of {name}: {verrors.one_line(exc)}") from exc
    finally:
        if quiesced:
            _thaw(dom)  # the point in time is fixed once the job has started
    stack.callback(_end_job, dom)
    if _job_socket(dom) != str(sock):
        raise BackupSourceError(f"the backup job of {name} is not the one just started")
    out = []
    for d in disks:
        disk = NbdDisk(d.target, _connect(sock, d.target))
        stack.callback(disk.close)
        out.append(disk)
    return out, quiesced


# --------------------------------------------------------------------------- shut-off VM


def _die_with_parent() -> None:  # runs in the child before exec
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def _disk_path(conn, d: DiskInfo) -> str:
    if d.kind in ("file", "block"):
        return d.path
    if d.kind == "volume":
        try:
            return conn.storagePoolLookupByName(d.pool).storageVolLookupByName(d.volume).path()
        except libvirt.libvirtError as exc:
            raise BackupSourceError(f"disk {d.target}: {verrors.one_line(exc)}") from exc
    raise BackupSourceError(f"disk {d.target} is a {d.kind} disk: only file, block and volume "
                            "disks of a shut-off VM are read")


def serve(stack: ExitStack, directory: Path, export: str, path: str, fmt: str, *, read_only: bool,
          on_pid=None) -> NbdClient:
    """Export one image with qemu-nbd on a socket in `directory` and connect to it. qemu-nbd
    stops when `stack` closes (the client first), and dies with this process if it is killed."""
    sock = directory / f"{export}.sock"
    errlog = open(directory / f"{export}.log", "wb")
    stack.callback(errlog.close)
    proc = subprocess.Popen(
        ["qemu-nbd", *(["--read-only", "--shared=4"] if read_only else ["--shared=1"]), "--persistent",
         f"--socket={sock}", f"--format={fmt}", f"--export-name={export}", "--", path],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=errlog,
        preexec_fn=_die_with_parent)
    if on_pid is not None:
        on_pid(proc.pid)
    stack.callback(_stop, proc)
    try:
        client = _connect(sock, export, alive=lambda: proc.poll() is None)
    except NbdError as exc:
        err = (directory / f"{export}.log").read_text(errors="replace").strip().splitlines()
        raise BackupSourceError(f"cannot open disk {export} ({path}): "
                                f"{err[-1] if err else verrors.one_line(exc)}") from exc
    stack.callback(client.close)
    return client


def _shutoff(stack: ExitStack, conn, root: ET.Element, run: _Run) -> list[NbdDisk]:
    disks, _skipped = backed_up_disks(root)
    return [NbdDisk(d.target, serve(stack, run.path, d.target, _disk_path(conn, d), d.format or "raw",
                                    read_only=True, on_pid=lambda pid: run.note("pids", str(pid))))
            for d in disks]


# --------------------------------------------------------------------------- the VM


def _state_label(state: DomainState) -> str:
    if not state.is_active:
        return "shutoff"
    return "paused" if state == DomainState.PAUSED else "running"


def _nvram(root: ET.Element) -> bytes | None:
    path = (root.findtext("os/nvram") or "").strip()
    if not path:
        return None
    try:
        return safefs.read_bytes(path)
    except OSError as exc:
        raise BackupSourceError(f"cannot read NVRAM {path}: {exc.strerror or exc}") from exc


def _local(conn) -> None:
    from urllib.parse import urlsplit

    if urlsplit(conn.getURI()).hostname not in (None, "", "localhost"):
        raise BackupSourceError("backups read disks through local sockets: connect to a local "
                                f"hypervisor, not {conn.getURI()}")


@contextmanager
def open_vm(target: Target, name: str, *, quiesce: bool, scratch_dir: str | os.PathLike[str]) -> Iterator[VmSource]:
    """The VM's XML, NVRAM and disks as NBD exports, for the life of the `with` block.
    Raises BackupSourceError, ValidationError, VirtError."""
    conn, manager = split(target)
    scratch_dir = Path(scratch_dir)
    with calling(manager, f"read {name} for backup"):
        _local(conn)
        _clean_runs(conn, scratch_dir)
        dom = lookup(conn, manager, name)
        xml = dom.XMLDesc(XML_INACTIVE_SECURE)
        state = state_of(dom)
        live = xmlmodel.parse(dom.XMLDesc(0) if state.is_active else xml, "domain")
    root = xmlmodel.parse(xml, "domain")
    notes: list[str] = []
    with ExitStack() as stack:
        run = _Run(scratch_dir, _dac_owner(live) if state.is_active else None)
        stack.callback(run.close)
        run.note("vm", dom.UUIDString())
        with calling(manager, f"back up {name}"):
            if state.is_active:
                disks, quiesced = _pull(stack, dom, live, run, quiesce, notes)
            else:
                disks, quiesced = _shutoff(stack, conn, live, run), False
        yield VmSource(dom.name(), dom.UUIDString(), _state_label(state), xml, _nvram(root),
                       list(disks), quiesced, notes)
