"""Confirm-or-revert: activate a risky change on trial and undo it by itself unless confirmed.

A trial belongs to one detached process, the *trial process* (`python -m
hyperconsole.cli.revert_timer`, in a transient unit under systemd). It holds the host-wide rebuild
lock for the trial's whole life and runs every step of it, in order, as rebuild jobs: the `test`
rebuild, then either confirm's `switch` or the revert. Consoles only write the change, ask (a
request in the record) and follow the jobs' logs. So no step of a trial overlaps another, no other
rebuild runs in between, and a console killed at any moment changes nothing of that: the automatic
revert always comes after the trial's activation, never before it.

`ConfirmOrRevert.apply(changeset, timeout=N)`:
1. write the fragments (FragmentStore.commit, lost-update checked) and record a PendingChange in
   `<nixos-dir>/hyperconsole/.pending-change.json` (previous fragment texts, the test, switch and
   revert commands, the window), then start the trial process;
2. the trial process takes the rebuild lock (when another rebuild holds it, it restores the files
   and ends), runs `test` and records the job, which the console follows;
3. on success it notes the system it activated and opens the window (deadline = now + N); on
   failure, or when the console that asked has exited meanwhile, it restores the files and runs the
   revert command.

`confirm()` asks for `switch`; `revert_now()` asks for the revert; at the deadline the trial
process reverts by itself. At revert time a running system other than the one the trial activated
is said in the outcome. The record lives in the NixOS dir, not in a user's home, so any later
session on the host sees it, and every change of it happens under `.pending.lock`. If the trial
process itself is killed, the next console that waits on it finishes the trial in its place; with no
console, a *watchdog* started beside it (its own detached process or unit, `--watchdog`) does so
once the deadline has passed: it reverts under the rebuild lock, and only if the trial is dead.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from hyperconsole import paths, proc, safefs
from hyperconsole.errors import HyperconsoleError
from hyperconsole.nixos import locking
from hyperconsole.nixos.rebuild import (
    CURRENT_SYSTEM, LAUNCH_TIMEOUT, SYSTEM_PROFILES, Job, RebuildBusyError, RebuildLine, RebuildResult, RebuildRunner, check_runnable, follow,
    open_log, pid_alive, read_record, split_command, systemd_wrap, under_systemd, write_record,
)
from hyperconsole.nixos.remote import REMOTE_GRACE
from hyperconsole.nixos.render import parse
from hyperconsole.nixos.store import ChangeSet, CommitResult, FragmentStore

PENDING_NAME = ".pending-change.json"
LAST_REVERT_NAME = ".last-revert.json"
LAST_TRIAL_NAME = ".last-trial.json"  # the record as it was when the trial ended
LOCK_NAME = ".pending.lock"
DEFAULT_TEST_TIMEOUT = 3600.0  # the trial rebuild may legitimately build for a long time
TRIAL_LOCK_WAIT = 5.0  # a trial waits this long for another rebuild to end, then is not started
REVERT_LOCK_WAIT = 3600.0  # finishing an orphaned trial waits for a rebuild in flight
TRIAL_START_GRACE = 30.0  # a trial process has this long to write its pid into the record
POLL_INTERVAL = 0.25
WATCHDOG_GRACE = 2.0  # the watchdog acts this long after the deadline (the trial itself acts at it)
WATCHDOG_INTERVAL = 5.0  # it re-reads the record this often: the deadline moves once `test` is done
REMOTE_STEP_TIMEOUT = 120.0  # arming or stopping the target's revert timer over ssh

# Options whose change can cut the operator off; a new default route can strand an SSH session too.
RISKY_OPTION_ROOTS = ("networking.firewall", "services.openssh", "users", "networking.bridges", "security",
                      "networking.defaultGateway", "networking.defaultGateway6", "networking.interfaces", "networking.vlans")


class NoPendingChange(HyperconsoleError):
    """Confirm was asked for but nothing is waiting for confirmation."""


class TrialPendingError(HyperconsoleError):
    """A rebuild was asked for while a trial change waits to be kept or reverted."""


@dataclass(frozen=True)
class PendingChange:
    change_id: str
    description: str
    created: float
    deadline: float
    timeout: int
    # "starting", "testing" (trial rebuild running), "armed" (waiting for confirm), "confirming", "reverting"
    state: str
    nixos_dir: str
    previous_texts: dict[str, str | None]
    test_argv: list[str]
    switch_argv: list[str]
    revert_argv: list[str]
    test_timeout: float = DEFAULT_TEST_TIMEOUT
    owner_pid: int = 0  # the console that asked; if it exits during the trial rebuild, revert at once
    trial_pid: int = 0  # the trial process
    unit: str = ""  # the trial process's transient unit, under systemd
    jobs: list[dict] = field(default_factory=list)  # the steps run so far, the last maybe running
    request: str = ""  # "confirm" or "revert", written by a console for the trial process
    request_reason: str = ""
    current_system: str = str(CURRENT_SYSTEM)  # the link naming the running system
    system_profile: str = str(SYSTEM_PROFILES / "system")  # the link naming the current generation
    activated_system: str = ""  # system_identity() once the trial was activated
    # A change activated on another machine (nixos/remote.py): the ssh commands that arm the
    # revert timer there before the trial, re-arm it for the window, and stop it.
    target_host: str = ""
    arm_argv: list[str] = field(default_factory=list)
    rearm_argv: list[str] = field(default_factory=list)
    disarm_argv: list[str] = field(default_factory=list)

    def remaining(self, now: float | None = None) -> float:
        return max(0.0, self.deadline - (time.time() if now is None else now))

    def replace(self, **changes) -> "PendingChange":
        return PendingChange(**{**asdict(self), **changes})

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> "PendingChange":
        return cls(**json.loads(text))

    def describe(self) -> str:
        """One line naming the trial, how long it has left and how to keep or revert it."""
        when = {
            "armed": f"reverts by itself in {self.remaining():.0f}s",
            "confirming": "being made permanent",
            "reverting": "being reverted",
        }.get(self.state, "its trial rebuild is still running")
        if self.trial_pid and not pid_alive(self.trial_pid):
            when = "its trial process has ended without finishing it"
        return (f"a trial change is pending: {self.description} ({when}); keep it with `hyperconsole confirm` "
                "or revert it with `hyperconsole revert`")


@dataclass(frozen=True)
class ApplyOutcome:
    commit: CommitResult
    rebuild: RebuildResult | None  # None with --no-rebuild
    pending: PendingChange | None  # set when waiting for confirmation
    reverted: bool = False  # the rebuild failed and the files were restored
    revert_result: RebuildResult | None = None  # the re-activation, when one ran

    @property
    def rolled_back(self) -> str:
        """One line saying what was undone; empty when nothing was."""
        if not self.reverted:
            return ""
        reactivated = " and the previous configuration re-activated" if self.revert_result is not None else ""
        return f"the change was rolled back: the fragment files were restored{reactivated}"


@dataclass(frozen=True)
class RevertOutcome:
    change_id: str
    restored: list[str]
    result: RebuildResult | None
    reason: str
    warning: str = ""  # e.g. the running system was not the one the trial activated


# The trial process's entry point (argument parsing lives with the other commands).
TIMER_MODULE = "hyperconsole.cli.revert_timer"


def trial_argv(nixos_dir: Path, change_id: str, state_dir: Path, *, watchdog: bool = False) -> list[str]:
    return [
        sys.executable, "-m", TIMER_MODULE,
        "--nixos-dir", str(nixos_dir), "--id", change_id, "--state-dir", str(state_dir),
        *(["--watchdog"] if watchdog else []),
    ]


def system_identity(current_system: Path, profile: Path) -> str:
    """The running system (where /run/current-system, or the demo's, points) and the profile's
    current generation: a manual `switch` of the trial's own files changes the second only.
    Empty for a change activated on another machine (its links are not here)."""
    if not str(current_system) or str(current_system) == ".":
        return ""
    running = os.path.realpath(current_system) if os.path.lexists(current_system) else ""
    try:
        generation = os.readlink(profile)
    except OSError:
        return running
    return f"{running or 'unknown'} (profile {generation})"


class ConfirmOrRevert:
    def __init__(
        self,
        store: FragmentStore,
        runner: RebuildRunner,
        revert_command: str,
        *,
        state_dir: Path | None = None,
        use_systemd: bool | None = None,
        test_timeout: float = DEFAULT_TEST_TIMEOUT,
        current_system: Path = CURRENT_SYSTEM,
        system_profile: Path = SYSTEM_PROFILES / "system",
    ) -> None:
        self.store = store
        self.runner = runner
        self.revert_argv = split_command(revert_command, "revert command")
        self.state_dir = state_dir or runner.state_dir or paths.state_dir()
        self.use_systemd = under_systemd() if use_systemd is None else use_systemd
        self.test_timeout = test_timeout
        self.current_system = Path(current_system)
        self.system_profile = Path(system_profile)

    # -- the record ---------------------------------------------------------------------------

    @property
    def pending_path(self) -> Path:
        return self.store.dir / PENDING_NAME

    @contextmanager
    def _locked(self, wait: float = 30.0) -> Iterator[None]:
        self.store.ensure_dir()
        busy = lambda _holder: HyperconsoleError(  # noqa: E731
            "another hyperconsole process is confirming or reverting")
        with locking.held(self.store.dir / LOCK_NAME, wait, busy):
            yield

    def pending(self) -> PendingChange | None:
        """The change waiting for confirmation, if any (what a new session should show)."""
        return load_pending(self.store.dir)

    def last_revert(self) -> dict | None:
        return read_record(self.store.dir / LAST_REVERT_NAME) or None

    def _save(self, record: PendingChange) -> None:
        safefs.atomic_write(self.pending_path, record.to_json().encode("utf-8"))

    def _update(self, change_id: str, **changes) -> PendingChange | None:
        """Change the record if it is still this change's; None when it is gone."""
        with self._locked():
            record = self.pending()
            if record is None or record.change_id != change_id:
                return None
            record = record.replace(**changes)
            self._save(record)
            return record

    def _drop(self, change_id: str, last_revert: dict | None = None) -> None:
        with self._locked(wait=REVERT_LOCK_WAIT):
            if last_revert is not None:
                # Readable like the pending record: any operator's `nixos status` shows it.
                write_record(self.store.dir / LAST_REVERT_NAME, last_revert, mode=safefs.FILE_MODE)
            record = self.pending()
            if record is not None and record.change_id == change_id:
                safefs.atomic_write(self.store.dir / LAST_TRIAL_NAME, record.to_json().encode("utf-8"))
                self.pending_path.unlink(missing_ok=True)

    def _ended_trial(self, change_id: str) -> PendingChange | None:
        try:
            record = load_pending(self.store.dir, LAST_TRIAL_NAME)
        except HyperconsoleError:
            return None
        return record if record is not None and record.change_id == change_id else None

    def refuse_if_pending(self) -> None:
        """A rebuild while a trial is pending would activate (or make permanent) the trial, and
        the automatic revert would then undo someone else's system: refuse, naming the trial."""
        record = self.pending()
        if record is not None:
            raise TrialPendingError(record.describe())

    def rebuild(self, action: str, **kwargs) -> RebuildResult:
        """A manual rebuild (`hyperconsole rebuild ACTION`): refused while a trial is pending."""
        self.refuse_if_pending()
        return self.runner.run(action, **kwargs)

    # -- apply ----------------------------------------------------------------------------------

    def apply(
        self,
        changeset: ChangeSet,
        *,
        timeout: int,
        description: str,
        rebuild: bool = True,
        on_line: Callable[[RebuildLine], None] | None = None,
        rebuild_timeout: float | None = None,
    ) -> ApplyOutcome:
        self.refuse_if_pending()
        if not rebuild:
            return ApplyOutcome(self.store.commit(changeset), None, None)
        if timeout <= 0:
            return self._switch_directly(changeset, description, on_line, rebuild_timeout)
        test_argv = self.runner.argv("test")
        check_runnable(test_argv)
        now = time.time()
        test_timeout = rebuild_timeout or self.test_timeout
        change_id = uuid.uuid4().hex[:12]
        record = PendingChange(
            change_id=change_id, description=description, created=now,
            deadline=now + test_timeout + timeout, timeout=int(timeout), state="starting",
            nixos_dir=str(self.store.nixos_dir), previous_texts=changeset.previous_texts(),
            test_argv=test_argv, switch_argv=self.runner.argv("switch"), revert_argv=list(self.revert_argv),
            test_timeout=test_timeout, owner_pid=os.getpid(), current_system=str(self.current_system),
            system_profile=str(self.system_profile),
        )
        target = self.runner.target
        if target is not None:  # the revert must happen on the target, even with the link cut
            record = record.replace(
                target_host=target.dest, revert_argv=target.over_ssh(self.revert_argv),
                current_system="", system_profile="",
                arm_argv=target.arm_argv(change_id, 1, int(test_timeout) + timeout + REMOTE_GRACE,
                                         self.revert_argv, description),
                rearm_argv=target.arm_argv(change_id, 2, timeout + REMOTE_GRACE, self.revert_argv, description),
                disarm_argv=target.disarm_argv(change_id))
        with self._locked():
            self.refuse_if_pending()
            # The record is written with the fragments, all or nothing: never a change without it.
            commit = self.store.commit(changeset, records={PENDING_NAME: record.to_json().encode("utf-8")})
        try:
            trial = self._start_trial(record)
        except BaseException:
            self._revert(record.change_id, reason="the trial could not be started", reactivate=False)
            raise
        steps, armed = self._watch(record.change_id, until=("armed",), on_line=on_line, trial=trial)
        test = steps.get("test")
        if armed is not None:
            return ApplyOutcome(commit, test, armed)
        if test is None:
            last = self.last_revert() or {}
            raise HyperconsoleError(last.get("reason") or "the trial ended before its rebuild started")
        return ApplyOutcome(commit, test, None, reverted=True, revert_result=steps.get("revert"))

    def _switch_directly(self, changeset: ChangeSet, description: str, on_line, rebuild_timeout) -> ApplyOutcome:
        """No trial: write and `switch`. A switch that fails (or cannot start) leaves the files as
        they were before, as a failed trial does."""
        commit = self.store.commit(changeset)
        undo = changeset.previous_texts()
        try:
            result = self.runner.run("switch", on_line=on_line, timeout=rebuild_timeout)
        except BaseException:
            self._restore(undo, f"hyperconsole: undo {description} (switch did not complete)")
            raise
        if result.ok:
            return ApplyOutcome(commit, result, None)
        self._restore(undo, f"hyperconsole: undo {description} (switch {result.status})")
        return ApplyOutcome(commit, result, None, reverted=True)

    def _restore(self, texts: dict[str, str | None], message: str) -> CommitResult:
        return self.store.commit(self.store.prepare_texts(texts, message=message), check_hashes=False)

    def _start_trial(self, record: PendingChange) -> subprocess.Popen | None:
        """Start the watchdog that finishes the trial if its process dies, then the trial process
        (in that order: a trial never runs without its watchdog)."""
        self._detach(record, "watchdog", "hyperconsole: trial change watchdog", "revert-watchdog")
        return self._detach(record, "trial", "hyperconsole: trial change (confirm or revert)", "revert-timer")

    def _detach(self, record: PendingChange, role: str, description: str, log_name: str) -> subprocess.Popen | None:
        """One detached process of a trial: a transient unit under systemd, else its own session."""
        command = trial_argv(self.store.nixos_dir, record.change_id, self.state_dir, watchdog=role == "watchdog")
        if self.use_systemd:
            unit = f"hyperconsole-{role}-{record.change_id}"
            try:
                done = proc.run(systemd_wrap(command, unit, description), LAUNCH_TIMEOUT)
            except subprocess.TimeoutExpired:
                raise HyperconsoleError(f"systemd-run did not start the {role} within {LAUNCH_TIMEOUT:.0f} s") from None
            if done.returncode != 0:
                raise HyperconsoleError(f"cannot start the {role}: {proc.text(done.stderr).strip()[:200]}")
            if role == "trial":
                self._update(record.change_id, unit=unit)
            return None
        log_dir = safefs.ensure_private_dir(self.state_dir / "rebuilds")
        fd = open_log(log_dir / f"{log_name}-{record.change_id}.log", create=True)
        try:
            # A new session and no inherited pipes: it must outlive this console and must not keep
            # a caller's stdout open.
            return subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=fd, stderr=fd,
                                    start_new_session=True, close_fds=True, cwd="/")
        finally:
            os.close(fd)

    def _watch(self, change_id: str, *, until: tuple[str, ...], on_line=None,
               trial: subprocess.Popen | None = None) -> tuple[dict[str, RebuildResult], PendingChange | None]:
        """Follow the trial's steps (each job's output to on_line) until the record reaches a state
        in `until` (returned) or is gone (None). Returns the results of the steps seen, by label."""
        steps: dict[str, RebuildResult] = {}
        followed: set[str] = set()
        started = time.monotonic()

        def follow_new(record: PendingChange) -> bool:
            new = [job for job in record.jobs if job["record"] not in followed]
            for job in new:
                followed.add(job["record"])
                steps[job["label"]] = follow(Job.from_dict(job), on_line=on_line)
            return bool(new)

        while True:
            record = self.pending()
            if record is None or record.change_id != change_id:
                ended = self._ended_trial(change_id)
                if ended is not None:
                    follow_new(ended)  # steps that ran and ended between two looks
                return steps, None
            if follow_new(record):
                continue
            if record.state in until:
                return steps, record
            if not self._trial_alive(record, trial, started):
                self._take_over(change_id)  # its steps are followed like the trial's own
                continue
            time.sleep(POLL_INTERVAL)

    @staticmethod
    def _trial_alive(record: PendingChange, trial: subprocess.Popen | None, started: float) -> bool:
        if record.trial_pid:
            return pid_alive(record.trial_pid)
        if trial is not None:
            return trial.poll() is None
        return time.monotonic() - started < TRIAL_START_GRACE

    def _take_over(self, change_id: str) -> None:
        """The trial process died (killed): finish the trial here as it would have, with the
        rebuild lock held: after the step it left running, the switch asked for by a confirm
        (unless that switch already ran), otherwise the revert."""
        record = self.pending()
        if record is not None and record.jobs:
            follow(Job.from_dict(record.jobs[-1]))  # whatever it left running ends first
        with self.runner.hold_lock(REVERT_LOCK_WAIT, "finishing an abandoned trial change"):
            record = self.pending()
            if record is None or record.change_id != change_id or (record.trial_pid and pid_alive(record.trial_pid)):
                return
            if record.state == "confirming" or record.request == "confirm" and record.state == "armed":
                if not record.jobs or record.jobs[-1]["label"] != "switch":
                    self._disarm(record, None, "confirming")
                    self._step(record, "switch", record.switch_argv)
                self._drop(change_id)
                return
            reason = record.request_reason if record.request == "revert" else "the trial process ended unexpectedly"
            self._revert(change_id, reason=reason)

    def _step(self, record: PendingChange, label: str, argv: list[str], on_line=None,
              timeout: float | None = None, state: str | None = None) -> RebuildResult:
        """One step of the trial as a job; the caller holds the rebuild lock for it."""
        state = state or {"test": "testing", "switch": "confirming", "revert": "reverting",
                          "arm": "testing", "rearm": "testing"}[label]
        return self.runner.run_argv(
            argv, label, on_line=on_line, timeout=timeout, lock=False,
            on_start=lambda job: self._add_job(record.change_id, state, job),
        )

    def _disarm(self, record: PendingChange, on_line, state: str) -> bool:
        """Stop the target's revert timers (a remote change only). False when it could not."""
        if not record.disarm_argv:
            return True
        try:
            return self._step(record, "disarm", record.disarm_argv, on_line, REMOTE_STEP_TIMEOUT, state).ok
        except HyperconsoleError:
            return False

    def _add_job(self, change_id: str, state: str, job: Job) -> None:
        with self._locked():
            record = self.pending()
            if record is not None and record.change_id == change_id:
                self._save(record.replace(state=state, jobs=[*record.jobs, job.to_dict()]))

    # -- confirm ----------------------------------------------------------------------------------

    def confirm(
        self, *, on_line: Callable[[RebuildLine], None] | None = None, rebuild_timeout: float | None = None
    ) -> RebuildResult:
        """Make the trial configuration permanent with `switch` (run by the trial process, which
        holds the rebuild lock until it ends) and cancel the revert."""
        with self._locked():
            record = self.pending()
            if record is None:
                raise NoPendingChange("nothing is waiting for confirmation")
            if record.state in ("starting", "testing"):
                raise HyperconsoleError("the trial rebuild is still running", hint="confirm once it has finished")
            if record.state != "armed" or record.request:
                raise HyperconsoleError("the change is already being confirmed or reverted")
            self._save(record.replace(request="confirm"))
        steps, _ = self._watch(record.change_id, until=(), on_line=on_line)
        if "switch" not in steps:
            raise HyperconsoleError("the switch that keeps the change could not be started",
                                    hint=f"see {self.state_dir / 'rebuilds'}/revert-timer-{record.change_id}.log")
        return steps["switch"]

    # -- revert -----------------------------------------------------------------------------------

    def revert_now(
        self,
        change_id: str | None = None,
        *,
        reason: str,
        on_line: Callable[[RebuildLine], None] | None = None,
    ) -> RevertOutcome | None:
        """Ask for the revert now and follow it. Returns None when the change was confirmed
        meanwhile (or nothing is pending)."""
        with self._locked():
            record = self.pending()
            if record is None or (change_id is not None and record.change_id != change_id):
                return None
            if not record.request and record.state not in ("confirming", "reverting"):
                self._save(record.replace(request="revert", request_reason=reason))
        steps, _ = self._watch(record.change_id, until=(), on_line=on_line)
        last = self.last_revert() or {}
        if last.get("change_id") != record.change_id:
            return None
        return RevertOutcome(record.change_id, last.get("restored", []), steps.get("revert"),
                             last.get("reason", reason), last.get("warning", ""))

    def _revert(self, change_id: str, *, reason: str, on_line=None, reactivate: bool = True) -> RevertOutcome | None:
        """Restore the fragments and (with reactivate) run the revert command. The caller holds the
        rebuild lock (the trial process, or a console finishing for it), or nothing ran yet."""
        record = self._update(change_id, state="reverting")
        if record is None:
            return None
        warning = ""
        now = system_identity(Path(record.current_system), Path(record.system_profile))
        if record.activated_system and now != record.activated_system:
            warning = (f"the running system is not the one the trial activated (trial: {record.activated_system}, "
                       f"now: {now or 'unknown'}): something else was activated meanwhile; the revert command "
                       "re-activates the system profile's current generation")
        commit = self._restore(record.previous_texts, f"hyperconsole: revert {record.description} ({reason})")
        result, status = None, "files restored (nothing was activated)"
        if reactivate:
            try:
                result = self._step(record, "revert", record.revert_argv, on_line)
                status = result.status
            except HyperconsoleError as exc:
                status = f"files restored; the revert command did not run: {exc}"
        if record.disarm_argv and any(job["label"] in ("arm", "rearm") for job in record.jobs):
            if result is not None and not result.ok:
                # The target could not be reached (or the revert failed there): its own timer
                # is the revert now; leave it armed.
                warning = (warning + "; " if warning else "") + (
                    f"the revert did not complete over ssh; the revert timer on {record.target_host} reverts it "
                    "by itself")
            elif not self._disarm(record, on_line, "reverting"):
                warning = (warning + "; " if warning else "") + (
                    f"could not stop the revert timer on {record.target_host}; it re-activates the same "
                    "(reverted) system when it fires")
        self._drop(change_id, {
            "change_id": record.change_id, "description": record.description, "reason": reason,
            "reverted_at": time.time(), "restored": commit.written, "status": status, "warning": warning,
            "log": str(result.log_path) if result and result.log_path else None,
        })
        return RevertOutcome(record.change_id, commit.written, result, reason, warning)

    # -- the trial process --------------------------------------------------------------------------

    def run_trial(self, change_id: str, say: Callable[[str], None]) -> int:
        """The trial process's life, with the rebuild lock held. Returns an exit status."""
        record = self._update(change_id, trial_pid=os.getpid(), state="testing")
        if record is None:
            say(f"change {change_id} is no longer pending")
            return 0
        show = lambda line: say(line.text)  # noqa: E731
        if record.arm_argv:  # a remote change: its revert is armed on the target first
            try:
                arm = self._step(record, "arm", record.arm_argv, show, timeout=REMOTE_STEP_TIMEOUT)
            except HyperconsoleError as exc:
                return self._finish(change_id, f"cannot arm the revert on {record.target_host}: {exc}", say,
                                    reactivate=False)
            if not arm.ok:
                return self._finish(change_id, f"cannot arm the revert on {record.target_host} ({arm.status}); "
                                    "nothing was activated", say, reactivate=False)
        try:
            result = self._step(record, "test", record.test_argv, show, timeout=record.test_timeout)
        except HyperconsoleError as exc:
            return self._finish(change_id, f"trial rebuild could not start: {exc}", say, reactivate=False)
        if not result.ok:
            return self._finish(change_id, f"trial rebuild {result.status}", say)
        if record.owner_pid and not pid_alive(record.owner_pid):
            # Nobody is left to see the trial and keep it.
            return self._finish(change_id, "the console exited during the trial rebuild", say)
        if record.rearm_argv:
            try:
                rearm = self._step(record, "rearm", record.rearm_argv, show, timeout=REMOTE_STEP_TIMEOUT)
                rearmed = rearm.ok
            except HyperconsoleError:
                rearmed = False
            if not rearmed:
                say(f"warning: could not re-arm the revert on {record.target_host} for the window; "
                    "the timer armed before the trial still reverts it, later")
        armed = self._update(change_id, state="armed", deadline=time.time() + record.timeout,
                             activated_system=system_identity(Path(record.current_system),
                                                              Path(record.system_profile)))
        if armed is None:
            return 0
        say(f"{time.strftime('%H:%M:%S')} on trial; reverts in {record.timeout}s unless confirmed")
        while True:
            record = self.pending()
            if record is None or record.change_id != change_id:
                say(f"{time.strftime('%H:%M:%S')} change {change_id} no longer pending")
                return 0
            if record.request == "confirm":
                say(f"{time.strftime('%H:%M:%S')} confirmed; switching")
                if not self._disarm(record, show, "confirming"):
                    say(f"warning: could not stop the revert timer on {record.target_host}; if the switch "
                        "cannot reach it either, the timer reverts the change")
                try:
                    result = self._step(record, "switch", record.switch_argv, show)
                except HyperconsoleError as exc:
                    say(f"error: {exc}")
                    result = None
                self._drop(change_id)
                return 0 if result is not None and result.ok else 1
            if record.request == "revert":
                return self._finish(change_id, record.request_reason or "reverted by the operator", say)
            if record.remaining() <= 0:
                return self._finish(change_id, "not confirmed in time", say)
            time.sleep(min(POLL_INTERVAL, record.remaining()))

    def watch_trial(self, change_id: str, say: Callable[[str], None]) -> int:
        """The watchdog's life: once the deadline (re-read, it moves when the window opens) and a
        grace have passed, finish the trial as a console would if its process is dead. Ends when
        the record is gone or is another change's."""
        while True:
            record = self.pending()
            if record is None or record.change_id != change_id:
                say(f"{time.strftime('%H:%M:%S')} change {change_id} no longer pending; nothing to do")
                return 0
            wait = record.deadline + WATCHDOG_GRACE - time.time()
            if wait <= 0 and not (record.trial_pid and pid_alive(record.trial_pid)):
                say(f"{time.strftime('%H:%M:%S')} the trial process of change {change_id} has ended; finishing it")
                try:
                    self._take_over(change_id)  # under the rebuild lock, re-checked there
                except HyperconsoleError as exc:
                    say(f"error: {exc}")
                    time.sleep(WATCHDOG_INTERVAL)
                continue
            # Past the deadline with the trial alive: it is finishing; watch in case it dies doing so.
            time.sleep(min(wait, WATCHDOG_INTERVAL) if wait > 0 else WATCHDOG_INTERVAL)

    def _finish(self, change_id: str, reason: str, say: Callable[[str], None], reactivate: bool = True) -> int:
        say(f"{time.strftime('%H:%M:%S')} {reason}; reverting change {change_id}")
        outcome = self._revert(change_id, reason=reason, on_line=lambda line: say(line.text), reactivate=reactivate)
        if outcome is None:
            say("nothing to revert (confirmed meanwhile)")
            return 0
        if outcome.warning:
            say(f"warning: {outcome.warning}")
        say(f"reverted {', '.join(outcome.restored) or 'no files'}; revert command "
            f"{outcome.result.status if outcome.result else 'not run'}")
        return 0 if reactivate and outcome.result is not None and outcome.result.ok else 1


def load_pending(fragments_dir: Path, name: str = PENDING_NAME) -> PendingChange | None:
    try:
        data = safefs.read_bytes(fragments_dir / name)
    except OSError as exc:
        raise HyperconsoleError(f"cannot read {fragments_dir / name}: {exc.strerror}") from exc
    if data is None:
        return None
    try:
        return PendingChange.from_json(data.decode("utf-8", "replace"))
    except (ValueError, TypeError) as exc:
        raise HyperconsoleError(f"{fragments_dir / name} is damaged", hint="inspect and delete it") from exc


def controller_for(config, demo: bool = False) -> "ConfirmOrRevert":
    """The store, runner and revert command a config describes (CLI and Security pane alike).
    The demo's "rebuild" is a local evaluation; running it in a transient unit adds nothing."""
    use_systemd = False if demo else None
    runner = RebuildRunner.from_config(config, use_systemd=use_systemd)
    return ConfirmOrRevert(FragmentStore(config.nixos_dir), runner, config.revert_command, use_systemd=use_systemd,
                           current_system=Path(config.current_system), system_profile=Path(config.system_profile))


def default_confirm_timeout(changeset: ChangeSet, configured: int) -> int:
    """`configured` seconds when the change alters options that can cut the operator off
    (firewall, SSH, users, bridges, default gateway, security/profile), else 0 (switch directly).
    Only options whose value differs count: a DNS change in a fragment that also holds firewall
    rules does not put the unchanged firewall on trial."""
    for change in changeset.changes:
        if not change.changed:
            continue
        try:
            old = parse(change.old_text) if change.old_text is not None else {}
            new = parse(change.new_text) if change.new_text is not None else {}
        except HyperconsoleError:
            return configured  # unreadable: assume the worst
        if any(_is_risky(path) for path in changed_paths(old, new)):
            return configured
    return 0


def _is_risky(path: str) -> bool:
    return any(path == root or path.startswith(root + ".") for root in RISKY_OPTION_ROOTS)


_ABSENT = object()


def changed_paths(old, new, prefix: str = ""):
    """Dotted option paths whose value differs between two fragment values (leaves, or the
    deepest attribute set that appeared, vanished or changed type, plus every leaf under it)."""
    if old == new:
        return
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(old.keys() | new.keys()):
            path = f"{prefix}.{key}" if prefix else key
            yield from changed_paths(old.get(key, _ABSENT), new.get(key, _ABSENT), path)
        return
    yield prefix
    for side in (old, new):
        if isinstance(side, dict):  # a whole subtree came or went: each option in it changed
            yield from changed_paths(side, {}, prefix)


# -- the trial process ----------------------------------------------------------------------------


def run_timer(nixos_dir: str | Path, change_id: str, state_dir: str | Path, say: Callable[[str], None],
              *, watchdog: bool = False) -> int:
    """The detached trial process: take the rebuild lock for the whole trial and run it. When
    another rebuild holds the lock, the trial is not started: the files are restored. With
    `watchdog`, the trial's watchdog instead (ConfirmOrRevert.watch_trial)."""
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    store = FragmentStore(nixos_dir)
    try:
        record = load_pending(store.dir)
    except HyperconsoleError as exc:
        say(f"error: {exc}")
        return 1
    if record is None or record.change_id != change_id:
        say(f"change {change_id} is no longer pending; exiting")
        return 0
    state_dir = Path(state_dir)
    runner = RebuildRunner(nixos_dir, "true", state_dir=state_dir, use_systemd=False)
    controller = ConfirmOrRevert(store, runner, shlex.join(record.revert_argv), state_dir=state_dir,
                                 use_systemd=False, current_system=Path(record.current_system),
                                 system_profile=Path(record.system_profile))
    if watchdog:
        return controller.watch_trial(change_id, say)
    try:
        with runner.hold_lock(TRIAL_LOCK_WAIT, f"trial change {record.description!r}"):
            return controller.run_trial(change_id, say)
    except RebuildBusyError as exc:
        return controller._finish(change_id, f"trial rebuild could not start: {exc}", say, reactivate=False)
