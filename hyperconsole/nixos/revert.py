"""Confirm-or-revert: activate a risky change on trial and undo it by itself unless confirmed.

Sequence of `ConfirmOrRevert.apply(changeset, timeout=N)`:
1. write the fragments (FragmentStore.commit, lost-update checked);
2. record a PendingChange in `<nixos-dir>/hyperconsole/.pending-change.json` (previous fragment
   texts, revert command, deadline) and arm the revert timer *before* the trial rebuild, so a
   console killed mid-rebuild still leaves a timer behind;
3. run the rebuild command with `test`; on success push the deadline to now + N and return;
   on failure restore the files and run the revert command at once.

`confirm()` removes the record (which disarms the timer) and runs `switch`. The timer is a detached
process (or, under systemd, a transient timer unit) running `python -m hyperconsole.cli.revert_timer`:
it polls the record until its deadline, then restores the files and runs the revert command. The
record lives in the NixOS dir, not in a user's home, so any later session on the host sees it.
Every state transition happens under `.pending.lock`, so confirm and the timer cannot both win.
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

from hyperconsole import paths, safefs
from hyperconsole.errors import HyperconsoleError
from hyperconsole.nixos import locking
from hyperconsole.nixos.rebuild import RebuildLine, RebuildResult, RebuildRunner, split_command, under_systemd
from hyperconsole.nixos.render import parse
from hyperconsole.nixos.store import ChangeSet, CommitResult, FragmentStore

PENDING_NAME = ".pending-change.json"
LAST_REVERT_NAME = ".last-revert.json"
LOCK_NAME = ".pending.lock"
DEFAULT_TEST_TIMEOUT = 3600.0  # the trial rebuild may legitimately build for a long time
REVERT_LOCK_WAIT = 3600.0  # the revert waits for an in-flight rebuild rather than give up
POLL_INTERVAL = 0.25

# Fragments whose change can cut the operator off default to confirm-or-revert.
# Options whose change can cut the operator off; a new default route can strand an SSH session too.
RISKY_OPTION_ROOTS = ("networking.firewall", "services.openssh", "users", "networking.bridges", "security",
                      "networking.defaultGateway", "networking.defaultGateway6")


class NoPendingChange(HyperconsoleError):
    """Confirm was asked for but nothing is waiting for confirmation."""


@dataclass(frozen=True)
class PendingChange:
    change_id: str
    description: str
    created: float
    deadline: float
    timeout: int
    state: str  # "testing" (trial rebuild running), "armed" (waiting for confirm), "reverting"
    nixos_dir: str
    previous_texts: dict[str, str | None]
    revert_argv: list[str]
    timer: dict = field(default_factory=dict)  # {"kind": "process", "pid": N} or {"kind": "systemd", "unit": U}
    owner_pid: int = 0  # the console running the trial rebuild; if it dies mid-trial, revert at once

    def remaining(self, now: float | None = None) -> float:
        return max(0.0, self.deadline - (time.time() if now is None else now))

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> "PendingChange":
        data = json.loads(text)
        return cls(**data)


@dataclass(frozen=True)
class ApplyOutcome:
    commit: CommitResult
    rebuild: RebuildResult | None  # None with --no-rebuild
    pending: PendingChange | None  # set when waiting for confirmation
    reverted: bool = False  # the trial failed and the files were restored
    revert_result: RebuildResult | None = None


@dataclass(frozen=True)
class RevertOutcome:
    change_id: str
    restored: list[str]
    result: RebuildResult | None
    reason: str


# The detached timer's entry point (argument parsing lives with the other commands).
TIMER_MODULE = "hyperconsole.cli.revert_timer"


def timer_argv(nixos_dir: Path, change_id: str, state_dir: Path) -> list[str]:
    return [
        sys.executable, "-m", TIMER_MODULE,
        "--nixos-dir", str(nixos_dir), "--id", change_id, "--state-dir", str(state_dir),
    ]


def systemd_timer_argv(unit: str, delay_seconds: int, command: list[str]) -> list[str]:
    """A transient timer unit that runs `command` once after the delay; it survives the console."""
    return [
        "systemd-run", f"--unit={unit}", f"--on-active={max(1, int(delay_seconds))}s",
        "--timer-property=AccuracySec=1s", "--collect", "--quiet",
        "--description=hyperconsole: revert unconfirmed change", "--", *command,
    ]


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
    ) -> None:
        self.store = store
        self.runner = runner
        self.revert_argv = split_command(revert_command, "revert command")
        self.state_dir = state_dir or runner.state_dir or paths.state_dir()
        self.use_systemd = under_systemd() if use_systemd is None else use_systemd
        self.test_timeout = test_timeout

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
        try:
            return json.loads(safefs.read_bytes(self.store.dir / LAST_REVERT_NAME) or b"null")
        except (OSError, ValueError, HyperconsoleError):
            return None

    def _save(self, record: PendingChange) -> None:
        safefs.atomic_write(self.pending_path, record.to_json().encode("utf-8"))

    def _drop(self) -> None:
        self.pending_path.unlink(missing_ok=True)

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
        if self.pending() is not None:
            raise HyperconsoleError(
                "another change is waiting for confirmation", hint="run `hyperconsole confirm` or wait for it to revert"
            )
        if not rebuild:
            return ApplyOutcome(self.store.commit(changeset), None, None)
        if timeout <= 0:
            commit = self.store.commit(changeset)
            result = self.runner.run("switch", on_line=on_line, timeout=rebuild_timeout)
            return ApplyOutcome(commit, result, None)

        change_id = uuid.uuid4().hex[:12]
        now = time.time()
        record = PendingChange(
            change_id=change_id, description=description, created=now,
            deadline=now + self.test_timeout + timeout, timeout=int(timeout), state="testing",
            nixos_dir=str(self.store.nixos_dir), previous_texts=changeset.previous_texts(),
            revert_argv=list(self.revert_argv), owner_pid=os.getpid(),
        )
        with self._locked():
            if self.pending_path.exists():
                raise HyperconsoleError("another change is waiting for confirmation", hint="run `hyperconsole confirm`")
            # The record is written with the fragments, all or nothing: never a change without it.
            commit = self.store.commit(changeset, records={PENDING_NAME: record.to_json().encode("utf-8")})
        try:
            record = self._arm_timer(record)
        except BaseException:
            self.revert_now(change_id, reason="the revert timer could not be started", on_line=on_line, reactivate=False)
            raise
        try:
            result = self.runner.run("test", on_line=on_line, timeout=rebuild_timeout)
        except HyperconsoleError as exc:
            # The trial never started (another rebuild running, command missing): undo the files.
            self.revert_now(change_id, reason=f"trial rebuild could not start: {exc}", on_line=on_line, reactivate=False)
            raise
        if not result.ok:
            outcome = self.revert_now(change_id, reason=f"trial rebuild {result.status}", on_line=on_line)
            return ApplyOutcome(commit, result, None, reverted=True, revert_result=outcome.result if outcome else None)
        with self._locked():
            current = self.pending()
            if current is None or current.change_id != change_id:
                # The timer already reverted (the trial outlived test_timeout + timeout).
                return ApplyOutcome(commit, result, None, reverted=True)
            armed = PendingChange(**{**asdict(current), "state": "armed", "deadline": time.time() + timeout})
            self._save(armed)
        return ApplyOutcome(commit, result, armed)

    def _arm_timer(self, record: PendingChange) -> PendingChange:
        command = timer_argv(self.store.nixos_dir, record.change_id, self.state_dir)
        if self.use_systemd:
            unit = f"hyperconsole-revert-{record.change_id}"
            argv = systemd_timer_argv(unit, record.timeout, command)
            done = subprocess.run(argv, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                raise HyperconsoleError(f"cannot start the revert timer: {(done.stderr or '').strip()[:200]}")
            timer = {"kind": "systemd", "unit": unit}
        else:
            log_dir = self.state_dir / "rebuilds"
            safefs.ensure_private_dir(log_dir)
            fd = safefs.open_private(log_dir / f"revert-timer-{record.change_id}.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
            with os.fdopen(fd, "ab") as log:
                # A new session and no inherited pipes: the timer must outlive this console and
                # must not keep a caller's stdout open.
                proc = subprocess.Popen(
                    command, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                    start_new_session=True, close_fds=True, cwd="/",
                )
            timer = {"kind": "process", "pid": proc.pid}
        armed = PendingChange(**{**asdict(record), "timer": timer})
        with self._locked():
            self._save(armed)
        return armed

    # -- confirm ----------------------------------------------------------------------------------

    def confirm(
        self, *, on_line: Callable[[RebuildLine], None] | None = None, rebuild_timeout: float | None = None
    ) -> RebuildResult:
        """Cancel the revert and make the trial configuration permanent with `switch`."""
        with self._locked():
            record = self.pending()
            if record is None:
                raise NoPendingChange("nothing is waiting for confirmation")
            if record.state == "testing":
                raise HyperconsoleError("the trial rebuild is still running", hint="confirm once it has finished")
            if record.state != "armed":
                raise HyperconsoleError("the change is already being reverted")
            self._drop()
        cancel_timer(record)
        return self.runner.run("switch", on_line=on_line, timeout=rebuild_timeout)

    # -- revert -----------------------------------------------------------------------------------

    def revert_now(
        self,
        change_id: str | None = None,
        *,
        reason: str,
        on_line: Callable[[RebuildLine], None] | None = None,
        reactivate: bool = True,
    ) -> RevertOutcome | None:
        """Restore the fragments and (with reactivate) run the revert command to re-activate the
        previous configuration. Returns None when the change was confirmed or reverted meanwhile."""
        with self._locked(wait=REVERT_LOCK_WAIT):
            record = self.pending()
            if record is None or (change_id is not None and record.change_id != change_id):
                return None
            if record.state == "reverting":
                return None
            reverting = PendingChange(**{**asdict(record), "state": "reverting"})
            self._save(reverting)
        restore = self.store.prepare_texts(record.previous_texts, message=f"hyperconsole: revert {record.description} ({reason})")
        commit = self.store.commit(restore, check_hashes=False)
        result = (
            self.runner.run_argv(record.revert_argv, "revert", on_line=on_line, lock_wait=REVERT_LOCK_WAIT)
            if reactivate else None
        )
        summary = {
            "change_id": record.change_id, "description": record.description, "reason": reason,
            "reverted_at": time.time(), "restored": commit.written,
            "status": result.status if result else "files restored (nothing was activated)",
            "log": str(result.log_path) if result and result.log_path else None,
        }
        with self._locked(wait=REVERT_LOCK_WAIT):
            safefs.atomic_write(self.store.dir / LAST_REVERT_NAME, (json.dumps(summary, indent=2) + "\n").encode())
            self._drop()
        if record.timer.get("kind") == "process" and record.timer.get("pid") != os.getpid():
            cancel_timer(record)
        return RevertOutcome(record.change_id, commit.written, result, reason)


def load_pending(fragments_dir: Path) -> PendingChange | None:
    try:
        data = safefs.read_bytes(fragments_dir / PENDING_NAME)
    except OSError as exc:
        raise HyperconsoleError(f"cannot read {fragments_dir / PENDING_NAME}: {exc.strerror}") from exc
    if data is None:
        return None
    text = data.decode("utf-8", "replace")
    try:
        return PendingChange.from_json(text)
    except (ValueError, TypeError) as exc:
        raise HyperconsoleError(f"{fragments_dir / PENDING_NAME} is damaged", hint="inspect and delete it") from exc


def _is_our_timer(pid: int, change_id: str) -> bool:
    """Guard against signalling an unrelated process that reused the pid."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return TIMER_MODULE.encode() in cmdline and change_id.encode() in cmdline


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def controller_for(config, demo: bool = False) -> "ConfirmOrRevert":
    """The store, runner and revert command a config describes (CLI and Security pane alike).
    The demo's "rebuild" is a local evaluation; running it in a transient unit adds nothing."""
    use_systemd = False if demo else None
    runner = RebuildRunner.from_config(config, use_systemd=use_systemd)
    return ConfirmOrRevert(FragmentStore(config.nixos_dir), runner, config.revert_command, use_systemd=use_systemd)


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


def cancel_timer(record: PendingChange) -> None:
    timer = record.timer or {}
    if timer.get("kind") == "process":
        pid = int(timer.get("pid", 0))
        if pid > 0 and _is_our_timer(pid, record.change_id):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    elif timer.get("kind") == "systemd":
        unit = str(timer.get("unit", ""))
        # The timer process re-checks the record anyway, so a failed stop cannot revert a
        # confirmed change; stopping only tidies up.
        subprocess.run(
            ["systemctl", "stop", f"{unit}.timer", f"{unit}.service"], capture_output=True, check=False
        )


# -- the timer process ----------------------------------------------------------------------------


def run_timer(nixos_dir: str | Path, change_id: str, state_dir: str | Path,
              say: Callable[[str], None], stopped: Callable[[], bool] = lambda: False) -> int:
    """The detached revert timer: wait for the deadline, then revert unless the change was
    confirmed (the record is gone or belongs to another change). Returns an exit status."""
    store = FragmentStore(nixos_dir)
    state_dir = Path(state_dir)
    runner = RebuildRunner(nixos_dir, "true", state_dir=state_dir, use_systemd=False)
    while True:
        if stopped():
            say(f"{time.strftime('%H:%M:%S')} timer cancelled")
            return 0
        try:
            record = load_pending(store.dir)
        except HyperconsoleError as exc:
            say(f"error: {exc}")
            return 1
        if record is None or record.change_id != change_id or record.state == "reverting":
            say(f"{time.strftime('%H:%M:%S')} change {change_id} no longer pending; exiting")
            return 0
        remaining = record.remaining()
        if remaining <= 0:
            reason = "not confirmed in time"
            break
        if record.state == "testing" and record.owner_pid and not _alive(record.owner_pid):
            # Nobody is left to finish the trial and start the confirmation window.
            reason = "the console exited during the trial rebuild"
            break
        time.sleep(min(POLL_INTERVAL, remaining))
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # once reverting, finish the job
    controller = ConfirmOrRevert(store, runner, shlex.join(record.revert_argv), state_dir=state_dir,
                                 use_systemd=False)
    say(f"{time.strftime('%H:%M:%S')} {reason}; reverting change {change_id}")
    try:
        outcome = controller.revert_now(change_id, reason=reason, on_line=lambda line: say(line.text))
    except HyperconsoleError as exc:
        say(f"error: revert failed: {exc}")
        return 1
    if outcome is None:
        say("nothing to revert (confirmed meanwhile)")
        return 0
    say(f"reverted {', '.join(outcome.restored) or 'no files'}; revert command "
        f"{outcome.result.status if outcome.result else 'not run'}")
    return 0 if outcome.result is None or outcome.result.ok else 1
