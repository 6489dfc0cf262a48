"""Running backup jobs: back up, forget per retention, prune, verify, restore and restore-test.

A run of a job: for each selected VM, `source.open_vm` gives a consistent view of its disks (the
libvirt backup API for running/paused VMs, the disk files for shut-off ones), `archive` turns it
into one tar stream, and `restic backup --stdin` stores it as one snapshot tagged with job, VM,
UUID, quiesced and state. Then `restic forget` applies the retention (pruning the data is
`prune`, a separate, heavier step).

Whatever happens half-way (restic or the console killed, the VM stopping), a run leaves nothing
behind: open_vm's context ends the libvirt job and the NBD export, the scratch directory is
removed, restic's own lock is stale once its process is gone and the next run's first restic
command clears it with `restic unlock` (which removes stale locks only). Runs of one job never
overlap (a lock file).
Each run's result is recorded for the pane's "last run" and sizes, in one place every reader finds:
/var/lib/hyperconsole/backups (written by root, who runs the timer units; group-readable by the
operators group where the NixOS module made it), or a user's own state dir where that does not exist.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
from contextlib import AbstractContextManager, contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from hyperconsole import names, paths, safefs
from hyperconsole.backup import archive
from hyperconsole.backup.jobs import Job, next_elapse, read_jobs
from hyperconsole.backup.restic import ForgetGroup, Progress, Repository, Snapshot, Stats, tag
from hyperconsole.errors import HyperconsoleError, ValidationError
from hyperconsole.nixos import locking

RECORDS = "runs.json"
TEST_PREFIX = "hc-restore-test-"
BOOT_TIMEOUT = 300.0

OpenVm = Callable[..., AbstractContextManager[Any]]


SHARED_DIR = Path("/var/lib/hyperconsole/backups")
SHARED_FILE_MODE = 0o640  # the module makes the dir setgid to the operators group: they read it


def state_dir() -> Path:
    """Where run records and job locks live: the shared dir for root and wherever it exists (the
    console of an operator reads what the root timer units wrote), else the user's own state dir."""
    if os.geteuid() == 0 or SHARED_DIR.is_dir():
        return SHARED_DIR
    return paths.state_dir() / "backups"


def repository(job: Job) -> Repository:
    return Repository(job.repository, job.password_file, compression=job.compression)


# -- results and their record -----------------------------------------------------------------------


@dataclass(frozen=True)
class VmResult:
    vm: str
    ok: bool
    snapshot: str = ""
    size: int = 0          # bytes of the archive (allocated data + headers)
    added: int = 0         # bytes the repository grew by
    seconds: float = 0.0
    quiesced: bool = False
    error: str = ""
    notes: tuple[str, ...] = ()  # from the VM source, e.g. why it was not quiesced


@dataclass(frozen=True)
class RunResult:
    job: str
    started: float
    finished: float
    vms: tuple[VmResult, ...]
    error: str = ""

    @property
    def ok(self) -> bool:
        return not self.error and all(v.ok for v in self.vms)

    def summary(self) -> str:
        if self.error:
            return self.error
        failed = [v for v in self.vms if not v.ok]
        if failed:
            return f"{len(failed)} of {len(self.vms)} VMs failed: " + "; ".join(f"{v.vm}: {v.error}" for v in failed)
        added = sum(v.added for v in self.vms)
        return f"{len(self.vms)} VMs backed up, {names.human_size(added)} added"


@dataclass(frozen=True)
class TestResult:
    vm: str
    ok: bool
    snapshot: str = ""
    seconds: float = 0.0   # restore + boot: the recovery time
    boot_seconds: float = 0.0
    when: float = 0.0
    error: str = ""


class Records:
    """The state file of past runs: last run per job, figures per snapshot, last restore test
    per VM. In the shared dir 0640 (the dir's group: operators); elsewhere 0600 in a 0700 dir.
    Written atomically; updates hold a lock so parallel jobs do not lose each other's."""

    def __init__(self, directory: Path | None = None) -> None:
        self.dir = directory or state_dir()
        self.shared = self.dir == SHARED_DIR

    def read(self) -> dict:
        try:
            data = safefs.read_bytes(self.dir / RECORDS) if self.dir.is_dir() else None
        except PermissionError as exc:
            raise HyperconsoleError(f"cannot read the backup run records in {self.dir}",
                                    hint="members of the operators group can; `hyperconsole doctor` checks it") from exc
        try:
            value = json.loads(data) if data else {}
        except ValueError:
            value = {}
        return value if isinstance(value, dict) else {}

    def ensure_dir(self) -> Path:
        if self.shared:  # root's; the module's tmpfiles rule gives it the operators group
            return safefs.ensure_dir(self.dir, 0o750, parents=True)
        return safefs.ensure_private_dir(self.dir)

    @contextmanager
    def _update(self) -> Iterator[dict]:
        self.ensure_dir()
        with locking.held(self.dir / ".records.lock", 30, lambda who: HyperconsoleError(f"backup records busy ({who})")):
            data = self.read()
            yield data
            safefs.atomic_write(self.dir / RECORDS, json.dumps(data, indent=1, sort_keys=True).encode(),
                                SHARED_FILE_MODE if self.shared else safefs.PRIVATE_FILE_MODE)

    def add_run(self, result: RunResult) -> None:
        with self._update() as data:
            runs = data.setdefault("runs", {})
            good = result.finished if result.ok else (runs.get(result.job) or {}).get("last_good")
            runs[result.job] = {**asdict(result), "ok": result.ok, "summary": result.summary(), "last_good": good}
            snaps = data.setdefault("snapshots", {})
            for vm in result.vms:
                if vm.snapshot:
                    snaps[vm.snapshot[:8]] = {"size": vm.size, "added": vm.added, "seconds": vm.seconds,
                                              "quiesced": vm.quiesced, "notes": list(vm.notes)}

    def add_test(self, job: str, result: TestResult) -> None:
        with self._update() as data:
            data.setdefault("tests", {})[f"{job}/{result.vm}"] = asdict(result)

    def last_run(self, job: str) -> dict | None:
        return self.read().get("runs", {}).get(job)

    def snapshot(self, short_id: str) -> dict:
        return self.read().get("snapshots", {}).get(short_id[:8], {})

    def tests(self, job: str) -> dict[str, dict]:
        return {k.split("/", 1)[1]: v for k, v in self.read().get("tests", {}).items() if k.startswith(job + "/")}


# -- one run ----------------------------------------------------------------------------------------


def scratch_root() -> Path:
    """Where open_vm puts its per-run directories (NBD sockets, scratch files). QEMU runs as
    libvirt-qemu under a system libvirtd and must reach it, so it is not the private state dir."""
    return Path("/var/lib/hyperconsole/backup-scratch") if os.geteuid() == 0 else paths.state_dir() / "backup-scratch"


@contextmanager
def job_lock(job: Job, records: Records) -> Iterator[None]:
    """Held for a whole run: runs of one job never overlap."""
    base = records.ensure_dir()
    busy = lambda who: ValidationError(f"backup job {job.name} is already running (pid {who.strip() or '?'})")  # noqa: E731
    with locking.held(base / f"{job.name}.lock", 0, busy, note=f"{os.getpid()}\n"):
        yield


def domain_names(conn) -> list[str]:
    return sorted(dom.name() for dom in conn.listAllDomains(0))


def default_open_vm() -> OpenVm:
    from hyperconsole.backup import source  # the VM side: libvirt backup API, NBD, qemu-nbd

    return source.open_vm


def tags(job: Job, src) -> list[str]:
    return [tag("hc-job", job.name), tag("hc-vm", src.name), tag("hc-uuid", src.uuid),
            tag("hc-quiesced", "yes" if src.quiesced else "no"), tag("hc-state", src.state)]


def backup_vm(conn, job: Job, vm: str, *, repo: Repository, scratch: Path, open_vm: OpenVm,
              cancel: threading.Event | None = None,
              on_progress: Callable[[str, int, int], None] | None = None, when: str | None = None) -> VmResult:
    """One VM into one snapshot. on_progress(vm, bytes restic has read, bytes the stream will have).
    open_vm keeps its own per-run directory in `scratch` and removes what killed runs left there."""
    started = time.monotonic()
    with open_vm(conn, vm, quiesce=job.quiesce, scratch_dir=scratch) as src:
        planned = archive.plan(src)
        total = planned.stream_bytes

        def progress(p: Progress) -> None:
            if on_progress is not None:
                on_progress(vm, min(p.bytes_done, total), total)

        summary = repo.backup_stdin(
            f"{vm}.tar", tags(job, src),
            # mtime 0: an unchanged VM gives the very same stream, so restic stores nothing new
            lambda pipe: archive.write_archive(src, pipe, planned=planned),
            when=when, on_progress=progress, cancel=cancel)
        return VmResult(vm, True, summary.snapshot_id, summary.total_bytes, summary.data_added,
                        time.monotonic() - started, bool(src.quiesced), notes=tuple(getattr(src, "notes", ())))


def run_job(conn, job: Job, *, only_vm: str | None = None, open_vm: OpenVm | None = None,
            cancel: threading.Event | None = None, on_progress: Callable[[str, int, int], None] | None = None,
            records: Records | None = None, when: str | None = None, forget: bool = True,
            scratch: Path | None = None) -> RunResult:
    """Back up the job's VMs (or only `only_vm`), then forget per retention; the result is recorded.
    Refusals that change nothing (no such VM, repository problems) raise before any backup."""
    records = records or Records()
    real_source = open_vm is None
    open_vm = open_vm or default_open_vm()
    scratch = scratch or scratch_root()
    repo = repository(job)
    selected = job.select(domain_names(conn))
    if only_vm is not None:
        if only_vm not in selected:
            raise ValidationError(f"VM {only_vm!r} is not in backup job {job.name}"
                                  if only_vm in domain_names(conn) else f"no VM named {only_vm!r}")
        selected = [only_vm]
    if not selected:
        raise ValidationError(f"backup job {job.name} selects no VM on this host")
    started = time.time()
    with job_lock(job, records):
        if real_source:
            from hyperconsole.backup import source

            source.cleanup(conn, scratch)  # libvirt jobs and qemu-nbd left by a killed run
        # Wrong password / no repository: one line, before any VM work. A lock restic calls stale
        # (a killed run's) is cleared by Repository.run on the way (`restic unlock`, stale only).
        repo.snapshots(["hc-job=" + job.name])
        results = []
        for vm in selected:
            if cancel is not None and cancel.is_set():
                results.append(VmResult(vm, False, error="cancelled"))
                continue
            try:
                results.append(backup_vm(conn, job, vm, repo=repo, scratch=scratch, open_vm=open_vm,
                                         cancel=cancel, on_progress=on_progress, when=when))
            except HyperconsoleError as exc:
                results.append(VmResult(vm, False, error=str(exc)))
        error = ""
        if forget and any(r.ok for r in results):
            try:
                repo.forget(job.retention.flags(), [f"hc-job={job.name}"], dry_run=False)
            except HyperconsoleError as exc:
                error = f"backed up, but the retention could not be applied: {exc}"
    result = RunResult(job.name, started, time.time(), tuple(results), error)
    records.add_run(result)
    return result


# -- repository views and maintenance ---------------------------------------------------------------


@dataclass(frozen=True)
class SnapshotRow:
    snapshot: Snapshot
    job: str
    vm: str
    quiesced: str
    size: int | None
    added: int | None
    notes: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return f"{self.snapshot.short_id} of {self.vm}"


def snapshot_rows(job: Job, *, vm: str | None = None, records: Records | None = None) -> list[SnapshotRow]:
    records = records or Records()
    wanted = [tag("hc-job", job.name)] + ([tag("hc-vm", vm)] if vm else [])
    known = records.read().get("snapshots", {})
    rows = []
    for snap in repository(job).snapshots(wanted):
        figures = known.get(snap.short_id, {})
        rows.append(SnapshotRow(snap, job.name, snap.tag("hc-vm"), snap.tag("hc-quiesced") or "?",
                                figures.get("size"), figures.get("added"), tuple(figures.get("notes") or ())))
    return rows


def prune_preview(job: Job) -> list[ForgetGroup]:
    return repository(job).forget(job.retention.flags(), [f"hc-job={job.name}"], dry_run=True)


def prune(job: Job) -> list[ForgetGroup]:
    repo = repository(job)
    repo.unlock()
    return repo.forget(job.retention.flags(), [f"hc-job={job.name}"], dry_run=False, prune=True)


def check(job: Job, subset: str = "5%") -> str:
    return repository(job).check(subset)


def stats(job: Job) -> Stats:
    return repository(job).stats([tag("hc-job", job.name)])


# -- restore ----------------------------------------------------------------------------------------


def find_snapshot(jobs: list[Job], ident: str) -> tuple[Job, Snapshot]:
    """The job whose repository holds snapshot `ident` (a unique id prefix)."""
    problems = []
    for job in jobs:
        try:
            return job, repository(job).snapshot(ident)
        except HyperconsoleError as exc:
            problems.append(exc)
    if problems and all(type(p).__name__ != "UnknownSnapshot" for p in problems):
        raise problems[0]
    raise ValidationError(f"no snapshot {ident[:70]!r} in the repositories of the backup jobs",
                          hint="`hyperconsole backup snapshots` lists them")


def default_restorer():
    from hyperconsole.backup import restore  # the VM side: volumes, domain definition

    return restore.VmRestorer


def restore_snapshot(conn, job: Job, snap: Snapshot, *, as_name: str | None = None, pool: str | None = None,
                     in_place: bool = False, strip_nics: bool = False, restorer=None,
                     cancel: threading.Event | None = None) -> str:
    """Restore one snapshot as a new VM (`as_name`, disks into `pool`) or over its VM (`in_place`)."""
    if in_place == bool(as_name):
        raise ValidationError("restore either as a new VM (--as NAME) or in place (--in-place)")
    if as_name is not None:
        names.vm_name(as_name)
    if pool is not None:
        names.pool_name(pool)
    make = restorer or default_restorer()
    restored: list[str] = []

    def read(stream) -> None:
        restored.append(archive.restore_archive(stream, lambda xml, nvram, sizes: make(
            conn, xml, nvram, as_name=as_name, pool=pool, in_place=in_place, strip_nics=strip_nics,
            sizes=sizes or None)))

    repository(job).dump(snap.id, snap.paths[0] if snap.paths else f"/{snap.tag('hc-vm')}.tar", read, cancel=cancel)
    if not restored:
        raise HyperconsoleError("the snapshot held no VM archive")
    return restored[0]


def default_boot_check():
    from hyperconsole.backup import restore

    return restore.boot_check


def delete_vm(conn, name: str) -> None:
    from hyperconsole.virt import lifecycle

    lifecycle.delete(conn, name, remove_storage=True)


def restore_test(conn, job: Job, *, only_vm: str | None = None, restorer=None, boot_check=None,
                 records: Records | None = None, timeout: float = BOOT_TIMEOUT,
                 cleanup: Callable[[Any, str], None] = delete_vm) -> list[TestResult]:
    """Restore the newest snapshot of each VM as a temporary VM without NICs, boot it, wait for a
    sign of life, record the time (the recovery time), and delete the VM and its volumes."""
    records = records or Records()
    boot_check = boot_check or default_boot_check()
    latest: dict[str, Snapshot] = {}
    for snap in repository(job).snapshots([f"hc-job={job.name}"]):
        latest[snap.tag("hc-vm")] = snap  # sorted by time: the newest wins
    if only_vm is not None:
        if only_vm not in latest:
            raise ValidationError(f"backup job {job.name} has no snapshot of VM {only_vm!r}")
        latest = {only_vm: latest[only_vm]}
    if not latest:
        raise ValidationError(f"backup job {job.name} has no snapshots to test")
    results = []
    for vm, snap in sorted(latest.items()):
        temp = (TEST_PREFIX + vm)[:names.MAX_NAME]
        started = time.monotonic()
        result: TestResult
        defined = False
        try:
            restore_snapshot(conn, job, snap, as_name=temp, strip_nics=True, restorer=restorer)
            defined = True
            boot = boot_check(conn, temp, timeout)
            result = TestResult(vm, True, snap.short_id, time.monotonic() - started, boot, time.time())
        except HyperconsoleError as exc:
            result = TestResult(vm, False, snap.short_id, time.monotonic() - started, 0.0, time.time(), str(exc))
        finally:
            if defined:
                try:
                    cleanup(conn, temp)
                except HyperconsoleError as exc:
                    result = TestResult(vm, False, snap.short_id, time.monotonic() - started, 0.0, time.time(),
                                        f"the temporary VM {temp} could not be removed: {exc}")
        records.add_test(job.name, result)
        results.append(result)
    return results


# -- what the Backups pane lists --------------------------------------------------------------------


@dataclass(frozen=True)
class JobStatus:
    job: Job
    next_run: str
    last: dict | None  # the recorded last run (RunResult fields, ok, summary)
    size: int | None   # what the repository stores for the job (after dedup and compression)
    error: str = ""

    @property
    def name(self) -> str:
        return self.job.name


def next_run(job: Job) -> str:
    """From the job's timer where systemd runs it, else when its schedule next fires."""
    if Path("/run/systemd/system").is_dir() and shutil.which("systemctl"):
        try:
            done = subprocess.run(["systemctl", "show", "--property=NextElapseUSecRealtime", "--value",
                                   f"{job.unit}.timer"], capture_output=True, text=True, timeout=10)
            if done.returncode == 0 and done.stdout.strip() not in ("", "n/a"):
                return done.stdout.strip()
        except (OSError, subprocess.SubprocessError):
            pass
    return next_elapse(job.schedule)


def job_statuses(store, records: Records | None = None) -> list[JobStatus]:
    records = records or Records()
    out = []
    for job in read_jobs(store):
        size, error, last = None, "", None
        try:
            last = records.last_run(job.name)
            size = stats(job).raw_size
        except HyperconsoleError as exc:
            error = str(exc)
        out.append(JobStatus(job, next_run(job), last, size, error))
    return out


@dataclass(frozen=True)
class SnapshotsView:
    rows: list[SnapshotRow]
    stats: Stats | None
    tests: dict[str, dict]  # per VM: the last restore test
    error: str = ""


def snapshots_view(job: Job, records: Records | None = None) -> SnapshotsView:
    records = records or Records()
    rows = snapshot_rows(job, records=records)
    return SnapshotsView(rows, repository(job).stats([tag("hc-job", job.name)]), records.tests(job.name))
