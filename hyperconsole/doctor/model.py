"""The doctor's registry model and runner: a Check has an id, says what it looks at, and its run()
gives PASS / WARN / FAIL / SKIP with one line of why, a hint, and maybe a safe Fix.

Checks run concurrently, one thread each, under a per-check deadline. Every command a check runs
goes through `Context.command`, which starts it in its own process group and kills that group at
the check's deadline; a check still busy past its deadline (a libvirt call that never answers) is
reported as timed out and left behind on its daemon thread, so a run never hangs.
"""

from __future__ import annotations

import enum
import os
import grp
import pwd
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from hyperconsole.config import Config
from hyperconsole.errors import HyperconsoleError

DEFAULT_TIMEOUT = 10.0
GRACE = 0.5  # how long past a deadline the runner waits for a check to notice it itself


class Status(enum.Enum):
    PASS = "pass"
    WARN = "warn"
    FAIL = "fail"
    SKIP = "skip"


SEVERITY = {Status.PASS: 0, Status.SKIP: 0, Status.WARN: 1, Status.FAIL: 2}


@dataclass(frozen=True)
class Fix:
    """A safe repair offered in pane 7: `apply(target, config)` goes through the same core call as
    the pane that would do it by hand (a libvirt call, or the fragments import). `touches` names
    what it changes, for the question asked first."""

    label: str
    touches: str
    apply: Callable[[Any, Config], object]


@dataclass(frozen=True)
class Outcome:
    status: Status
    why: str
    hint: str = ""
    fix: Fix | None = None
    detail: str = ""  # more lines: every pool, every unit, the journal lines


def ok(why: str, detail: str = "") -> Outcome:
    return Outcome(Status.PASS, why, detail=detail)


def warn(why: str, hint: str = "", fix: Fix | None = None, detail: str = "") -> Outcome:
    return Outcome(Status.WARN, why, hint, fix, detail)


def fail(why: str, hint: str = "", fix: Fix | None = None, detail: str = "") -> Outcome:
    return Outcome(Status.FAIL, why, hint, fix, detail)


def skip(why: str, hint: str = "") -> Outcome:
    return Outcome(Status.SKIP, why, hint)


@dataclass(frozen=True)
class Check:
    id: str  # "<group>.<name>", what --only takes
    what: str  # what it looks at, one short line
    run: Callable[["Context"], Outcome]
    timeout: float = DEFAULT_TIMEOUT
    needs_root: str = ""  # non-empty: SKIP with this reason when not root

    @property
    def group(self) -> str:
        return self.id.split(".", 1)[0]


@dataclass(frozen=True)
class Result:
    """One check's answer, as the CLI prints it and pane 7 shows it."""

    id: str
    what: str
    status: Status
    why: str
    hint: str = ""
    fix: Fix | None = None
    detail: str = ""
    seconds: float = 0.0

    @property
    def name(self) -> str:  # the resource view's label for a row
        return self.id


class CheckTimeout(HyperconsoleError):
    """A command a check ran did not finish before the check's deadline."""


@dataclass
class Completed:
    returncode: int
    stdout: str
    stderr: str


class Context:
    """What checks read: the config, the libvirt connection (`libvirt()`, opened once and shared),
    who runs the doctor, and `command()` for subprocesses under the check's deadline. Roots
    (`proc`, `sys`, `dev`, `etc`) are attributes so recorded trees can stand in where a machine lacks them."""

    def __init__(self, config: Config, *, manager: Any = None, readonly: bool = False,
                 env: dict[str, str] | None = None) -> None:
        self.config = config
        self.env = dict(os.environ if env is None else env)
        self.proc = Path("/proc")
        self.sys = Path("/sys")
        self.dev = Path("/dev")
        self.etc = Path("/etc")
        self.netns: str | None = None  # the network namespace whose interfaces count as the host's
        self.backup_records: Path | None = None  # the backup run records; None: where the runner keeps them
        self.systemd: bool | None = None  # whether systemd runs; None: look (/run/systemd/system)
        self.euid = os.geteuid()
        self._manager = manager
        self._own_manager = manager is None
        self._readonly = readonly
        self._open_lock = threading.Lock()
        self._open_error: HyperconsoleError | None = None
        self._local = threading.local()  # the running check's deadline and its live processes
        self._procs: dict[int, subprocess.Popen] = {}
        self._procs_lock = threading.Lock()

    # -- who ------------------------------------------------------------------------------------
    @property
    def root(self) -> bool:
        return self.euid == 0

    @property
    def user(self) -> str:
        try:
            return pwd.getpwuid(self.euid).pw_name
        except KeyError:
            return str(self.euid)

    def groups(self) -> set[str]:
        """Names of the groups this process has (supplementary and primary)."""
        names = set()
        for gid in {os.getegid(), *os.getgroups()}:
            try:
                names.add(grp.getgrgid(gid).gr_name)
            except KeyError:
                names.add(str(gid))
        return names

    # -- libvirt --------------------------------------------------------------------------------
    def libvirt(self) -> Any:
        """The connection manager, connected (read-write where allowed, else read-only). Raises
        HyperconsoleError with libvirt's one line when it cannot be opened."""
        with self._open_lock:
            if self._manager is None and self._open_error is None:
                from hyperconsole.virt.connection import ConnectionManager

                manager = ConnectionManager(self.config.uri, readonly=self._readonly)
                try:
                    manager.connect()
                except HyperconsoleError as exc:
                    self._open_error = exc
                else:
                    self._manager = manager
            if self._open_error is not None:
                raise self._open_error
            return self._manager

    def close(self) -> None:
        if self._own_manager and self._manager is not None:
            self._manager.close()
        self.kill_all()

    # -- commands -------------------------------------------------------------------------------
    def deadline(self) -> float:
        return getattr(self._local, "deadline", time.monotonic() + DEFAULT_TIMEOUT)

    def which(self, name: str) -> str | None:
        import shutil

        return shutil.which(name, path=self.env.get("PATH", os.defpath))

    def command(self, argv: Sequence[str], *, timeout: float | None = None) -> Completed:
        """Run argv (found on the context's PATH) with a clean locale, in its own process group,
        killed (the whole group) at the check's deadline or after `timeout`. Raises CheckTimeout."""
        limit = self.deadline() - time.monotonic()
        if timeout is not None:
            limit = min(limit, timeout)
        env = {**self.env, "LC_ALL": "C", "SYSTEMD_PAGER": "", "PAGER": "cat"}
        proc = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=env, start_new_session=True)
        with self._procs_lock:
            self._procs[proc.pid] = proc
        try:
            out, err = proc.communicate(timeout=max(0.0, limit))
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            proc.communicate()
            raise CheckTimeout(f"`{' '.join(argv[:3])}` did not finish within {max(0.0, limit):.0f} s") from None
        finally:
            with self._procs_lock:
                self._procs.pop(proc.pid, None)
        return Completed(proc.returncode, out.decode("utf-8", "replace"), err.decode("utf-8", "replace"))

    def kill_all(self) -> None:
        with self._procs_lock:
            procs = list(self._procs.values())
        for proc in procs:
            _kill_group(proc)


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _run_one(check: Check, ctx: Context, deadline: float) -> Outcome:
    ctx._local.deadline = deadline
    if check.needs_root and not ctx.root:
        return skip(f"needs root: {check.needs_root}", "run `sudo hyperconsole doctor` to include it")
    try:
        return check.run(ctx)
    except CheckTimeout as exc:
        return fail(f"timed out: {exc.message}", "the command hangs; see the journal of the service behind it")
    except HyperconsoleError as exc:
        return fail(exc.message, exc.hint or "")
    except Exception as exc:  # a check's own defect: reported as its result, never a traceback
        return fail(f"the check failed: {type(exc).__name__}: {exc}")


def run_checks(checks: Iterable[Check], ctx: Context,
               on_result: Callable[[Result], None] | None = None) -> list[Result]:
    """Run every check at once, each on its own thread with its own deadline; results in the
    order of `checks`. A check past its deadline is reported as timed out (FAIL) and its commands
    are killed; its thread, if stuck in a call that cannot be interrupted, is left to end alone."""
    checks = list(checks)
    results: dict[str, Result] = {}
    done = threading.Condition()
    started = time.monotonic()
    deadlines = {c.id: started + c.timeout for c in checks}

    def worker(check: Check) -> None:
        begin = time.monotonic()
        outcome = _run_one(check, ctx, deadlines[check.id])
        result = _result(check, outcome, time.monotonic() - begin)
        with done:
            if check.id in results:  # already reported as timed out
                return
            results[check.id] = result
            done.notify_all()
        if on_result is not None:
            on_result(result)

    for check in checks:
        threading.Thread(target=worker, args=(check,), name=f"doctor-{check.id}", daemon=True).start()
    with done:
        while len(results) < len(checks):
            now = time.monotonic()
            late = [c for c in checks if c.id not in results and now >= deadlines[c.id] + GRACE]
            for check in late:
                results[check.id] = _result(check, fail(
                    f"timed out: no answer within {check.timeout:.0f} s",
                    "something it asks (libvirt, a command, a file system) hangs"), now - started)
                if on_result is not None:
                    on_result(results[check.id])
            pending = [deadlines[c.id] + GRACE for c in checks if c.id not in results]
            if pending:
                done.wait(max(0.01, min(pending) - time.monotonic()))
    ctx.kill_all()
    return [results[c.id] for c in checks]


def _result(check: Check, outcome: Outcome, seconds: float) -> Result:
    return Result(check.id, check.what, outcome.status, outcome.why, outcome.hint, outcome.fix,
                  outcome.detail, round(seconds, 3))


def summary(results: Sequence[Result]) -> dict[str, int]:
    counts = {status.value: 0 for status in Status}
    for result in results:
        counts[result.status.value] += 1
    return counts


def exit_code(results: Sequence[Result]) -> int:
    """0 all pass (or skipped), 1 warnings, 2 failures."""
    return max((SEVERITY[r.status] for r in results), default=0)


def select(checks: Sequence[Check], only: Sequence[str] = ()) -> list[Check]:
    """The checks `--only` names (an id, or a group: `libvirt` means every libvirt.* check)."""
    if not only:
        return list(checks)
    ids = {c.id for c in checks}
    groups = {c.group for c in checks}
    unknown = [name for name in only if name not in ids and name not in groups]
    if unknown:
        raise HyperconsoleError(f"no such check: {', '.join(unknown)}", hint="see `hyperconsole doctor --list-checks`")
    return [c for c in checks if c.id in only or c.group in only]


WARN_FREE = 15.0  # free space, percent: warn below this
FAIL_FREE = 5.0  # and fail below this


def space_status(free_percent: float) -> Status:
    if free_percent < FAIL_FREE:
        return Status.FAIL
    if free_percent < WARN_FREE:
        return Status.WARN
    return Status.PASS
