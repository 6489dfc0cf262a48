"""Who carries out "run now" and "restore test now": this process, or the job's own root unit.

Root and the demo run a job in-process, and so does a user on a host without hyperconsole's NixOS
module (their own libvirt session, their own records). An operator without root on a host with
the module cannot read the VMs' disks nor write the shared records, so the console starts the
job's root unit (`hyperconsole-backup-<job>.service`, `hyperconsole-restore-test-<job>.service`;
the module's polkit rule lets the operators group start exactly those) and follows it: the unit
runs `hyperconsole backup run|test-restore JOB` as root, which writes the run record the console
then reads from the shared records dir.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from typing import Callable, Literal

from hyperconsole import proc
from hyperconsole.backup.jobs import Job
from hyperconsole.backup.runner import Records
from hyperconsole.changes import spool
from hyperconsole.errors import HyperconsoleError, ValidationError

Mode = Literal["in-process", "unit"]
Kind = Literal["run", "test"]
START_TIMEOUT = 60.0  # the unit has this long to show up as activating
RUN_TIMEOUT = 24 * 3600.0
POLL = 1.0


def mode(*, demo: bool, euid: int | None = None, module_installed: bool | None = None) -> Mode:
    """In-process for root, the demo, or where the NixOS module is not installed; else the unit."""
    if demo or (os.geteuid() if euid is None else euid) == 0:
        return "in-process"
    installed = spool.read_marker() is not None if module_installed is None else module_installed
    return "unit" if installed else "in-process"


def unit_of(job: Job, kind: Kind) -> str:
    return f"{job.unit if kind == 'run' else job.test_unit}.service"


def _systemctl(*args: str) -> tuple[int, str, str]:
    try:
        done = proc.run(["systemctl", *args], 60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise HyperconsoleError(f"systemctl {args[0]}: {exc}") from None
    return done.returncode, proc.text(done.stdout), proc.text(done.stderr)


def start(unit: str) -> None:
    returncode, _out, err = _systemctl("start", "--no-block", unit)
    if returncode != 0:
        detail = (err.strip().splitlines() or [f"exit {returncode}"])[-1]
        raise HyperconsoleError(f"cannot start {unit}: {detail}",
                                hint="members of the operators group may start a backup job's unit")


def unit_state(unit: str) -> str:
    """systemd's ActiveState of `unit` (active, activating, inactive, failed, …)."""
    returncode, out, _err = _systemctl("show", "--property=ActiveState", "--value", unit)
    return out.strip() if returncode == 0 else "unknown"


def _outcome(records: Records, job: Job, kind: Kind, since: float) -> dict | None:
    """The record the unit wrote for a run that started at or after `since`, else None."""
    if kind == "run":
        last = records.last_run(job.name)
        return last if last and last.get("started", 0) >= since else None
    tests = {vm: t for vm, t in records.tests(job.name).items() if t.get("when", 0) >= since}
    return {"tests": tests} if tests else None


def run_by_unit(job: Job, kind: Kind, *, records: Records | None = None, cancel: threading.Event | None = None,
                state: Callable[[str], str] = unit_state, starter: Callable[[str], None] = start,
                poll: float = POLL, start_timeout: float = START_TIMEOUT, timeout: float = RUN_TIMEOUT,
                clock: Callable[[], float] = time.time) -> dict:
    """Start the job's unit and wait until it has finished; the record it wrote (a run: the
    RunResult fields with ok and summary; a test: {"tests": {vm: TestResult fields}}). Cancelling
    stops the waiting, not the root unit."""
    records = records or Records()
    unit = unit_of(job, kind)
    since = clock() - 1.0  # the unit's clock is this host's: a second of slack for rounding
    starter(unit)
    started = time.monotonic()
    seen_running = False
    while True:
        if cancel is not None and cancel.is_set():
            raise HyperconsoleError(f"stopped following {unit}; it goes on as root",
                                    hint=f"`systemctl stop {unit}` (as root) ends it")
        current = state(unit)
        if current in ("activating", "active", "deactivating", "reloading"):
            seen_running = True
        elif seen_running or time.monotonic() - started > start_timeout:
            outcome = _outcome(records, job, kind, since)
            if outcome is None:
                raise HyperconsoleError(f"{unit} ended ({current}) without recording a result",
                                        hint=f"`journalctl -u {unit}` says why")
            return outcome
        elif _outcome(records, job, kind, since) is not None:  # over before the first look
            return _outcome(records, job, kind, since)  # type: ignore[return-value]
        if time.monotonic() - started > timeout:
            raise HyperconsoleError(f"{unit} is still running after {timeout / 3600:.0f} h")
        time.sleep(poll)


def refuse_vm_choice(vm: str | None) -> None:
    """The unit backs up (or tests) the whole job: one VM alone needs root."""
    if vm is not None:
        raise ValidationError("an operator runs the whole job through its unit; --vm needs root")
