"""`hyperconsole backup …`: jobs (written to backups.nix and applied with a switch: a schedule change
cannot lock anyone out, so no trial), runs, snapshots, restore, prune, check and restore tests.

Every refusal is one line on stderr with exit status 1, and nothing is changed.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import msgspec

from hyperconsole import names
from hyperconsole.backup import jobs as jobs_mod
from hyperconsole.backup import runner
from hyperconsole.backup import restic, units
from hyperconsole.backup.restic import Repository
from hyperconsole.changes import requests
from hyperconsole.cli.nixos import apply_changeset, ask_to_apply, guarded, make_submitter
from hyperconsole.config import Config
from hyperconsole.errors import HyperconsoleError, ValidationError
from hyperconsole.nixos.store import FragmentStore
from hyperconsole.sanitize import visible


def _store(config: Config) -> FragmentStore:
    return FragmentStore(config.nixos_dir)


def _jobs(config: Config) -> list[jobs_mod.Job]:
    return jobs_mod.read_jobs(_store(config))


def _job(config: Config, name: str) -> jobs_mod.Job:
    return jobs_mod.find(_jobs(config), name)


@contextmanager
def _connection(args: argparse.Namespace, config: Config) -> Iterator[object]:
    from hyperconsole.virt.connection import ConnectionManager

    manager = ConnectionManager(config.uri)
    manager.connect()
    try:
        yield manager.conn
    finally:
        manager.close()


def _demo(args: argparse.Namespace, attr: str):
    """The demo's counterpart of a VM-side part (None: the real one). Its test driver has no backup
    API, so its VMs are read as shut-off VMs' disks are, and restores go into the test driver."""
    if not getattr(args, "demo", False):
        return None
    from hyperconsole.demo import backup as demo_backup

    return getattr(demo_backup, attr)


def _records(args: argparse.Namespace) -> runner.Records:
    make = _demo(args, "records")
    return make() if make else runner.Records()


def _demo_ready(handler):
    """With --demo, the demo's job, repository and first snapshots exist before any command."""

    def wrapper(args: argparse.Namespace, config: Config) -> int:
        if getattr(args, "demo", False):
            from hyperconsole.demo import backup as demo_backup

            with _connection(args, config) as conn:
                demo_backup.ensure(config.nixos_dir, conn)
        return handler(args, config)

    wrapper.__name__ = handler.__name__
    return wrapper


# -- jobs ---------------------------------------------------------------------------------------------


def _from_args(args: argparse.Namespace, base: jobs_mod.Job | None) -> jobs_mod.Job:
    fields = msgspec.structs.asdict(base) if base else {"name": args.name}
    for arg, key in (("repo", "repository"), ("password_file", "password_file"), ("schedule", "schedule"),
                     ("compression", "compression")):
        if getattr(args, arg, None) is not None:
            fields[key] = getattr(args, arg)
    if args.vm:
        fields["vms"] = tuple(args.vm)
    if args.quiesce is not None:
        fields["quiesce"] = args.quiesce
    if args.restore_test is not None:
        fields["restore_test"] = None if args.restore_test == "off" else args.restore_test
    keep = {rule: getattr(args, f"keep_{rule}") for rule in ("last", "daily", "weekly", "monthly", "yearly")}
    if any(v is not None for v in keep.values()):
        current = msgspec.structs.asdict(base.retention) if base else {}
        fields["retention"] = jobs_mod.Retention(**{**current, **{k: v for k, v in keep.items() if v is not None}})
    for key in ("repository", "password_file"):
        if key not in fields:
            raise ValidationError(f"--{'repo' if key == 'repository' else 'password-file'} is required")
    return jobs_mod.validate(jobs_mod.Job(**fields))


def _apply(args: argparse.Namespace, config: Config, change: requests.Change, before=None) -> int:
    """Render the change (refusals are one line, nothing written), show the diff, then apply it
    with `switch` here as root or through the request unit for an operator."""
    submitter = make_submitter(args, config)
    prepared = requests.prepare(change, _store(config), requested_timeout=0, configured_timeout=0)
    if prepared.changeset.is_empty:
        print("backups.nix already says this; nothing to change")
        return 0
    if before is not None:
        before()
    print(prepared.changeset.diff(), end="")
    if not ask_to_apply(args):
        return 1
    return apply_changeset(args, config, submitter, change, prepared.changeset, 0)


@guarded
@_demo_ready
def cmd_job_add(args: argparse.Namespace, config: Config) -> int:
    job = _from_args(args, None)

    def prepare_repository() -> None:
        if args.create_password:
            restic.create_password_file(job.password_file)
        if args.init:
            Repository(job.repository, job.password_file, compression=job.compression).init()
            print(f"initialised the restic repository at {visible(job.repository)}")

    return _apply(args, config, requests.BackupJobAdd(job), prepare_repository)


@guarded
@_demo_ready
def cmd_job_edit(args: argparse.Namespace, config: Config) -> int:
    job = _from_args(args, _job(config, args.name))
    return _apply(args, config, requests.BackupJobEdit(job))


@guarded
@_demo_ready
def cmd_job_remove(args: argparse.Namespace, config: Config) -> int:
    return _apply(args, config, requests.BackupJobRemove(args.name))


@guarded
@_demo_ready
def cmd_job_list(args: argparse.Namespace, config: Config) -> int:
    jobs = _jobs(config)
    records = _records(args)
    if args.json:
        print(json.dumps([{**msgspec.to_builtins(j), "last_run": records.last_run(j.name)} for j in jobs], indent=1))
        return 0
    print(f"{'JOB':<16}{'SCHEDULE':<18}{'VMS':<20}{'KEEP':<16}{'LAST RUN':<24}REPOSITORY")
    for job in jobs:
        last = records.last_run(job.name)
        when = "never" if not last else (
            f"{'ok' if last['ok'] else 'FAILED'} {time.strftime('%Y-%m-%d %H:%M', time.localtime(last['finished']))}")
        print(visible(f"{job.name:<16}{job.schedule:<18}{','.join(job.vms):<20}{job.retention.describe():<16}"
                      f"{when:<24}{job.repository}"))
    return 0


@guarded
@_demo_ready
def cmd_init(args: argparse.Namespace, config: Config) -> int:
    job = _job(config, args.job)
    Repository(job.repository, job.password_file, compression=job.compression).init()
    print(f"initialised the restic repository at {visible(job.repository)}")
    return 0


# -- runs ---------------------------------------------------------------------------------------------


class _Progress:
    def __init__(self) -> None:
        self.last = 0.0

    def __call__(self, vm: str, done: int, total: int) -> None:
        now = time.monotonic()
        if sys.stderr.isatty() and now - self.last > 0.5:
            self.last = now
            pct = 100 * done // total if total else 0
            print(f"\r{visible(vm)}: {pct:3d}% {names.human_size(done)}", end="", file=sys.stderr, flush=True)


@guarded
@_demo_ready
def cmd_run(args: argparse.Namespace, config: Config) -> int:
    job = _job(config, args.job)
    if args.vm is not None:
        names.vm_name(args.vm)
    if units.mode(demo=getattr(args, "demo", False)) == "unit":
        units.refuse_vm_choice(args.vm)
        print(f"running {units.unit_of(job, 'run')} as root and following it", file=sys.stderr)
        last = units.run_by_unit(job, "run", records=_records(args))
        for vm in last.get("vms", []):
            print(visible(f"{vm['vm']}: " + (f"snapshot {vm['snapshot'][:8]}, {names.human_size(vm['added'])} added"
                                              if vm["ok"] else f"FAILED: {vm['error']}")))
        if not last["ok"]:
            print(visible(f"hyperconsole: {last['summary']}"), file=sys.stderr)
        return 0 if last["ok"] else 1
    cancel = threading.Event()
    with _connection(args, config) as conn:
        try:
            result = runner.run_job(conn, job, only_vm=args.vm, open_vm=_demo(args, "open_vm"), cancel=cancel,
                                    on_progress=_Progress(), records=_records(args))
        except KeyboardInterrupt:
            cancel.set()
            raise
    if sys.stderr.isatty():
        print(file=sys.stderr)
    for vm in result.vms:
        if vm.ok:
            print(visible(f"{vm.vm}: snapshot {vm.snapshot[:8]}, {names.human_size(vm.size)} read, "
                          f"{names.human_size(vm.added)} added, {vm.seconds:.1f}s"
                          + (", quiesced" if vm.quiesced else "")))
        else:
            print(visible(f"{vm.vm}: FAILED: {vm.error}"), file=sys.stderr)
    if result.error:
        print(visible(f"hyperconsole: {result.error}"), file=sys.stderr)
    return 0 if result.ok else 1


@guarded
@_demo_ready
def cmd_snapshots(args: argparse.Namespace, config: Config) -> int:
    jobs = _jobs(config)
    if args.job:
        jobs = [jobs_mod.find(jobs, args.job)]
    if args.vm is not None:
        names.vm_name(args.vm)
    rows = [row for job in jobs for row in runner.snapshot_rows(job, vm=args.vm, records=_records(args))]
    if args.json:
        print(json.dumps([{"id": r.snapshot.id, "short_id": r.snapshot.short_id, "time": r.snapshot.time,
                           "job": r.job, "vm": r.vm, "quiesced": r.quiesced, "size": r.size, "added": r.added,
                           "tags": list(r.snapshot.tags)} for r in rows], indent=1))
        return 0
    print(f"{'ID':<10}{'TIME':<22}{'JOB':<14}{'VM':<20}{'QUIESCED':<10}{'SIZE':>10}{'ADDED':>10}")
    for r in rows:
        print(visible(f"{r.snapshot.short_id:<10}{r.snapshot.time[:19].replace('T', ' '):<22}{r.job:<14}{r.vm:<20}"
                      f"{r.quiesced:<10}{names.human_size(r.size):>10}{names.human_size(r.added):>10}"))
    return 0


@guarded
@_demo_ready
def cmd_restore(args: argparse.Namespace, config: Config) -> int:
    if args.pool and args.in_place:
        raise ValidationError("--pool goes with --as (an in-place restore reuses the VM's own volumes)")
    job, snap = runner.find_snapshot(_jobs(config), args.snapshot)
    what = f"over VM {snap.tag('hc-vm')} (its disks are overwritten)" if args.in_place else f"as new VM {args.as_name}"
    print(visible(f"restoring snapshot {snap.short_id} of {snap.tag('hc-vm')} from {snap.time[:19]} {what}"))
    if args.in_place and not ask_to_apply(args):
        return 1
    with _connection(args, config) as conn:
        name = runner.restore_snapshot(conn, job, snap, as_name=args.as_name, pool=args.pool,
                                       in_place=args.in_place, restorer=_demo(args, "DemoRestorer"))
    print(visible(f"restored as {name}"))
    return 0


def _print_groups(groups) -> None:
    for group in groups:
        print(visible(f"{', '.join(group.paths)}: keep {len(group.keep)}, remove {len(group.remove)}"))
        for snap, rules in group.keep:
            print(visible(f"  keep   {snap.short_id} {snap.time[:19].replace('T', ' ')}  {', '.join(rules)}"))
        for snap in group.remove:
            print(visible(f"  remove {snap.short_id} {snap.time[:19].replace('T', ' ')}"))


@guarded
@_demo_ready
def cmd_prune(args: argparse.Namespace, config: Config) -> int:
    job = _job(config, args.job)
    if args.dry_run:
        _print_groups(runner.prune_preview(job))
        return 0
    groups = runner.prune(job)
    removed = sum(len(g.remove) for g in groups)
    _print_groups(groups)
    print(f"removed {removed} snapshots and pruned the repository")
    return 0


@guarded
@_demo_ready
def cmd_check(args: argparse.Namespace, config: Config) -> int:
    job = _job(config, args.job)
    print(visible(runner.check(job, args.subset)))
    return 0


@guarded
@_demo_ready
def cmd_test_restore(args: argparse.Namespace, config: Config) -> int:
    job = _job(config, args.job)
    if args.vm is not None:
        names.vm_name(args.vm)
    if units.mode(demo=getattr(args, "demo", False)) == "unit":
        units.refuse_vm_choice(args.vm)
        print(f"running {units.unit_of(job, 'test')} as root and following it", file=sys.stderr)
        tests = units.run_by_unit(job, "test", records=_records(args))["tests"]
        results = [runner.TestResult(**t) for _, t in sorted(tests.items())]
    else:
        results = _test_in_process(args, config, job)
    return _print_tests(results)


def _test_in_process(args: argparse.Namespace, config: Config, job: jobs_mod.Job) -> list[runner.TestResult]:
    with _connection(args, config) as conn:
        results = runner.restore_test(conn, job, only_vm=args.vm, restorer=_demo(args, "DemoRestorer"),
                                      boot_check=_demo(args, "boot_check"),
                                      cleanup=_demo(args, "delete_vm") or runner.delete_vm,
                                      records=_records(args))
    return results


def _print_tests(results: list[runner.TestResult]) -> int:
    for r in results:
        if r.ok:
            print(visible(f"{r.vm}: restore test passed with snapshot {r.snapshot}: recovered in {r.seconds:.1f}s "
                          f"(boot {r.boot_seconds:.1f}s)"))
        else:
            print(visible(f"{r.vm}: restore test FAILED with snapshot {r.snapshot}: {r.error}"), file=sys.stderr)
    return 0 if all(r.ok for r in results) else 1


# -- registration -----------------------------------------------------------------------------------


def _checked(check):
    def parse(text: str):
        try:
            return check(text)
        except ValidationError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    return parse


def _subset(text: str) -> str:
    if not re.fullmatch(r"(100|[1-9]?[0-9])(\.[0-9]+)?%", text):
        raise ValidationError(f"subset {text[:20]!r} must be a percentage such as 5% or 0.5%")
    return text


def _keep(text: str) -> int:
    return names.whole_number(text, "keep count", 0, jobs_mod.MAX_KEEP)


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    change = argparse.ArgumentParser(add_help=False)
    change.add_argument("--no-rebuild", action="store_true", help="only write backups.nix")
    change.add_argument("--yes", action="store_true", help="do not ask before applying (the diff is still shown)")

    def job_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("name", type=_checked(jobs_mod.job_name), metavar="NAME")
        p.add_argument("--repo", type=_checked(jobs_mod.repository), metavar="REPO",
                       help="restic repository: an absolute path or a restic URL")
        p.add_argument("--password-file", type=_checked(lambda t: names.absolute_path(t, "password file")),
                       metavar="FILE", help="file holding the repository password")
        p.add_argument("--vm", action="append", type=_checked(jobs_mod.vm_pattern), metavar="NAME|GLOB",
                       help="VM name or glob (repeatable; default: every VM)")
        p.add_argument("--schedule", type=_checked(jobs_mod.calendar), metavar="ONCALENDAR",
                       help="systemd OnCalendar, e.g. daily or 'Sun 03:00'")
        for rule in ("last", "daily", "weekly", "monthly", "yearly"):
            p.add_argument(f"--keep-{rule}", type=_checked(_keep), metavar="N")
        p.add_argument("--compression", choices=jobs_mod.COMPRESSION)
        p.add_argument("--quiesce", dest="quiesce", action="store_true", default=None,
                       help="freeze guest filesystems through the guest agent (default)")
        p.add_argument("--no-quiesce", dest="quiesce", action="store_false")
        p.add_argument("--restore-test", metavar="ONCALENDAR|off",
                       type=_checked(lambda t: t if t == "off" else jobs_mod.calendar(t, "restore-test schedule")),
                       help="schedule an automated restore test")

    backup = subparsers.add_parser("backup", help="VM backups into restic: jobs, runs, snapshots, restore",
                                   parents=[common])
    sub = backup.add_subparsers(dest="backup_command", required=True,
                                metavar="{job,init,run,snapshots,restore,prune,check,test-restore}")
    job = sub.add_parser("job", help="backup jobs (backups.nix)", parents=[common])
    job_sub = job.add_subparsers(dest="job_command", required=True, metavar="{add,edit,remove,list}")
    p = job_sub.add_parser("add", help="add a job", parents=[common, change])
    job_options(p)
    p.add_argument("--create-password", action="store_true", help="create the password file (0600, random)")
    p.add_argument("--init", action="store_true", help="initialise the repository")
    p.set_defaults(func=cmd_job_add)
    p = job_sub.add_parser("edit", help="change a job", parents=[common, change])
    job_options(p)
    p.set_defaults(func=cmd_job_edit)
    p = job_sub.add_parser("remove", help="remove a job (its snapshots stay)", parents=[common, change])
    p.add_argument("name", metavar="NAME")
    p.set_defaults(func=cmd_job_remove)
    p = job_sub.add_parser("list", help="the jobs and their last run", parents=[common])
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_job_list)

    p = sub.add_parser("init", help="initialise a job's restic repository", parents=[common])
    p.add_argument("job", metavar="JOB")
    p.set_defaults(func=cmd_init)
    p = sub.add_parser("run", help="run a job now", parents=[common])
    p.add_argument("job", metavar="JOB")
    p.add_argument("--vm", metavar="NAME", help="only this VM")
    p.set_defaults(func=cmd_run)
    p = sub.add_parser("snapshots", help="list snapshots", parents=[common])
    p.add_argument("--job", metavar="JOB")
    p.add_argument("--vm", metavar="NAME")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_snapshots)
    p = sub.add_parser("restore", help="restore a snapshot", parents=[common])
    p.add_argument("snapshot", metavar="SNAPSHOT")
    how = p.add_mutually_exclusive_group(required=True)
    how.add_argument("--as", dest="as_name", metavar="NAME", type=_checked(names.vm_name), help="as a new VM")
    how.add_argument("--in-place", action="store_true", help="over the original VM (it must be shut off)")
    p.add_argument("--pool", metavar="POOL", type=_checked(names.pool_name), help="pool for the new VM's disks")
    p.add_argument("--yes", action="store_true", help="do not ask before an in-place restore")
    p.set_defaults(func=cmd_restore)
    p = sub.add_parser("prune", help="forget snapshots per retention and prune", parents=[common])
    p.add_argument("job", metavar="JOB")
    p.add_argument("--dry-run", action="store_true", help="only show which snapshots would go, per rule")
    p.set_defaults(func=cmd_prune)
    p = sub.add_parser("check", help="verify the repository (reads a subset of the data)", parents=[common])
    p.add_argument("job", metavar="JOB")
    p.add_argument("--subset", default="5%", type=_checked(_subset), metavar="N%", help="share of the data to read (default 5%%)")
    p.set_defaults(func=cmd_check)
    p = sub.add_parser("test-restore", help="restore, boot and delete a temporary copy", parents=[common])
    p.add_argument("job", metavar="JOB")
    p.add_argument("--vm", metavar="NAME")
    p.set_defaults(func=cmd_test_restore)

