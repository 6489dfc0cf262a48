"""RebuildRunner (dry-build/test/switch/boot/rollback), generations, closure diffs.

A rebuild never depends on the console that started it: it runs as a *job*, a detached wrapper
(`python -m hyperconsole.cli.rebuild_job`) in its own session, stdin from /dev/null, its output
appended to a log file in the state dir (never a pipe), and its state written to a JSON record
beside the log when it starts, takes the rebuild lock, and ends. Under systemd the same wrapper
runs in a transient unit. The console only follows the log and the record, so killing it, a
SIGHUP, or the SSH session closing cannot stop or SIGPIPE the rebuild; any console can follow a
job it did not start (`follow`).

`run()` blocks, calls `on_line(RebuildLine)` for every output line as it arrives (with elapsed
seconds), honours a timeout and a cancel Event (both stop the job), and returns a RebuildResult.
It never raises for a failing rebuild (that is a result); it raises HyperconsoleError only when
the rebuild could not be started (busy, command missing).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterator, Sequence

from hyperconsole import paths, proc, safefs
from hyperconsole.errors import HyperconsoleError, ValidationError
from hyperconsole.nixos import locking
from hyperconsole.nixos.remote import TargetHost

ACTIONS = ("dry-build", "test", "switch", "boot", "rollback")
SYSTEM_PROFILES = Path("/nix/var/nix/profiles")
BOOTED_SYSTEM = Path("/run/booted-system")
CURRENT_SYSTEM = Path("/run/current-system")
TERMINATE_GRACE = 5.0
FOLLOW_INTERVAL = 0.1
JOB_START_GRACE = 30.0  # a job under systemd has this long to write its first record
LAUNCH_TIMEOUT = 30.0  # systemd-run returns once the unit is queued: longer means systemd is stuck
JOB_MODULE = "hyperconsole.cli.rebuild_job"
LOCK_NAME = ".rebuild.lock"
_ERROR_LINE = re.compile(r"(^|\s)error:", re.IGNORECASE)
_GENERATION_LINK = re.compile(r"system-(\d+)-link\Z")


class RebuildBusyError(HyperconsoleError):
    """Another rebuild (or a trial change) holds the host-wide rebuild lock."""


@dataclass(frozen=True)
class RebuildLine:
    elapsed: float
    text: str


@dataclass(frozen=True)
class RebuildResult:
    action: str
    argv: tuple[str, ...]
    status: str  # "succeeded", "failed", "timed out", "cancelled"
    returncode: int | None
    duration: float
    lines: tuple[str, ...]
    log_path: Path | None

    @property
    def ok(self) -> bool:
        return self.status == "succeeded"

    @property
    def error_lines(self) -> list[str]:
        return [line for line in self.lines if _ERROR_LINE.search(line)]

    def summary(self, tail: int = 20) -> list[str]:
        """What to show on failure: the `error:` lines first, then the last lines of output."""
        head = self.error_lines
        rest = [line for line in self.lines[-tail:] if line not in head]
        return head + rest


def under_systemd() -> bool:
    """True when PID 1 is systemd (the sd_booted() test) and systemd-run is available."""
    return Path("/run/systemd/system").is_dir() and shutil.which("systemd-run") is not None


def split_command(command: str, what: str = "rebuild command") -> list[str]:
    try:
        argv = shlex.split(command)
    except ValueError as exc:
        raise ValidationError(f"the {what} is not valid shell syntax: {exc}") from exc
    if not argv:
        raise ValidationError(f"the {what} is empty")
    return argv


def check_action(action: str) -> str:
    if action not in ACTIONS:
        raise ValidationError(f"unknown rebuild action {action!r}", hint="one of " + ", ".join(ACTIONS))
    return action


def rebuild_argv(
    rebuild_command: str, nixos_dir: str | os.PathLike[str], action: str, *, hostname: str | None = None, generation: int | None = None
) -> list[str]:
    """The command line for one action.

    The action is the last argument. For the real `nixos-rebuild`, `--flake <dir>#<host>` is
    added when the NixOS dir holds flake.nix, and `rollback` becomes `switch --rollback` (its own
    spelling). Rolling back to a given generation appends its number after the action, which the
    demo command understands; with nixos-rebuild, `rollback_argvs` is used instead.
    """
    check_action(action)
    argv = split_command(rebuild_command)
    is_nixos_rebuild = os.path.basename(argv[0]) == "nixos-rebuild"
    if is_nixos_rebuild and (Path(nixos_dir) / "flake.nix").is_file() and "--flake" not in argv:
        argv += ["--flake", f"{os.fspath(nixos_dir)}#{hostname or socket.gethostname()}"]
    if action == "rollback" and is_nixos_rebuild:
        return argv + ["switch", "--rollback"]
    argv.append(action)
    if generation is not None:
        argv.append(str(generation))
    return argv


def systemd_wrap(argv: Sequence[str], unit: str, description: str) -> list[str]:
    """Run argv (a rebuild job, or a trial) as a transient service, so it outlives the console and
    its SSH session; --collect cleans up even when it fails. No --pipe and no --wait: it writes its
    own log and record, which the console follows. A unit starts with systemd's environment, so
    the console's PATH (where the rebuild command was found) and Python path go with it."""
    python_path = os.pathsep.join(entry for entry in sys.path if entry)
    return [
        "systemd-run", f"--unit={unit}", f"--description={description}",
        "--collect", "--quiet", "--service-type=exec", "--property=KillMode=mixed",
        f"--setenv=PATH={os.environ.get('PATH', os.defpath)}", f"--setenv=PYTHONPATH={python_path}", "--", *argv,
    ]


def _now_stamp() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")


def check_runnable(argv: Sequence[str], what: str = "--rebuild-cmd") -> None:
    """Refuse before anything is started (or written) when the command cannot be run (the
    command itself, not the `env NAME=VALUE` in front of it)."""
    words = list(argv)
    if words and words[0] == "env":
        words = [w for w in words[1:] if "=" not in w] or words
    if shutil.which(words[0]) is None:
        raise HyperconsoleError(f"cannot run {words[0]}: no such executable", hint=f"check {what}")


def pid_alive(pid: int) -> bool:
    """Whether a process runs (a zombie does not count)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


# -- state files ---------------------------------------------------------------------------------
# Every file of a rebuild job goes through these (and safefs): private, never through a link.


def open_log(path: Path, *, create: bool) -> int:
    """A job's log, for appending (created new, never an existing file, with `create`)."""
    return safefs.open_private(path, os.O_WRONLY | os.O_APPEND | (os.O_CREAT | os.O_EXCL if create else 0))


def read_log(path: Path):
    return os.fdopen(safefs.open_file(path, os.O_RDONLY), "rb")


def write_record(path: Path, record: dict, mode: int = safefs.PRIVATE_FILE_MODE) -> None:
    safefs.atomic_write(Path(path), (json.dumps(record, indent=2) + "\n").encode("utf-8"), mode=mode)


def read_record(path: Path) -> dict:
    """A JSON record ({} when absent, damaged or behind a link)."""
    try:
        return json.loads(safefs.read_bytes(path) or b"{}")
    except (OSError, ValueError, HyperconsoleError):
        return {}


@contextmanager
def rebuild_lock(path: Path, wait: float, holder: str) -> Iterator[None]:
    """The host-wide rebuild lock, one for rebuild jobs, trials and reverts. Waits up to `wait`
    seconds, then RebuildBusyError naming the holder (what `holder` said when it took it)."""
    def busy(text: str) -> RebuildBusyError:
        return RebuildBusyError(f"another rebuild is running ({text})", hint="wait for it to finish")

    note = f"{holder}, pid {os.getpid()}, since {time.strftime('%H:%M:%S')}"
    with locking.held(path, wait, busy, note=note, poll=0.1):
        yield


# -- jobs ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Job:
    """One detached rebuild: its log, its record (state, pid, exit status), its unit if any."""

    label: str
    log: str
    record: str
    unit: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "Job":
        return cls(**data)

    def read_record(self) -> dict:
        return read_record(Path(self.record))


def run_job(argv: Sequence[str], label: str, log: Path, record_path: Path,
            lock_path: Path | None, lock_wait: float) -> int:
    """The body of the detached job (`python -m hyperconsole.cli.rebuild_job`): take the rebuild
    lock (unless the caller holds it for us, as a trial does), run argv with its output appended to
    the log, and write the record at each step, the exit status last."""
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # like nohup; also for the rebuild itself
    base = {"action": label, "argv": list(argv), "log": str(log), "pid": os.getpid(), "started": _now_stamp()}
    write_record(record_path, {**base, "state": "waiting"})
    started = time.monotonic()
    try:
        with rebuild_lock(lock_path, lock_wait, f"{label} rebuild") if lock_path else nullcontext():
            write_record(record_path, {**base, "state": "running"})
            fd = open_log(log, create=False)
            try:
                # The lock's descriptor is not inherited: a daemon the activation starts must
                # not hold the rebuild lock for ever.
                proc = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=fd, stderr=fd, close_fds=True)
            except OSError as exc:
                os.write(fd, f"error: cannot run {argv[0]}: {exc.strerror or exc}\n".encode())
                returncode = 127
            else:
                returncode = proc.wait()
            finally:
                os.close(fd)
    except RebuildBusyError as exc:
        write_record(record_path, {**base, "state": "busy", "error": str(exc)})
        return 75
    status = "succeeded" if returncode == 0 else "failed"
    write_record(record_path, {**base, "state": "done", "status": status, "returncode": returncode,
                               "duration": round(time.monotonic() - started, 3)})
    return 0 if returncode == 0 else 1


def follow(job: Job, *, on_line: Callable[[RebuildLine], None] | None = None, timeout: float | None = None,
           cancel: threading.Event | None = None, proc: subprocess.Popen | None = None,
           owner: bool = False) -> RebuildResult:
    """Follow a job's log until its record says it ended, forwarding each line as it arrives.
    The owner (the console that started it) stops the job on timeout, cancel, or when it fails
    itself (a callback raising, Ctrl-C); any other follower only watches."""
    started = time.monotonic()
    lines: list[str] = []

    def emit(raw: bytes) -> None:
        text = raw.decode("utf-8", "replace").rstrip("\r")
        lines.append(text)
        if on_line is not None:
            on_line(RebuildLine(time.monotonic() - started, text))

    status: str | None = None
    with read_log(Path(job.log)) as log:
        log.readline()  # the command line, written by whoever started the job
        partial = b""
        try:
            while True:
                chunk = log.read(65536)
                if chunk:
                    *complete, partial = (partial + chunk).split(b"\n")
                    for raw in complete:
                        emit(raw)
                    continue
                record = job.read_record()
                if record.get("state") == "busy":
                    raise RebuildBusyError(record.get("error") or "another rebuild is running")
                if record.get("state") == "done":
                    break
                if owner and timeout is not None and time.monotonic() - started > timeout:
                    status = "timed out"
                elif owner and cancel is not None and cancel.is_set():
                    status = "cancelled"
                elif not _job_alive(job, proc, started) and job.read_record().get("state") != "done":
                    status = "failed"
                if status is not None:
                    break
                time.sleep(FOLLOW_INTERVAL)
        except BaseException:
            if owner:
                stop_job(job, proc)
            raise
        if status in ("timed out", "cancelled"):
            stop_job(job, proc)
        for raw in (partial + log.read()).split(b"\n"):
            if raw:
                emit(raw)
    record = job.read_record()
    if status is not None:
        emit((f"hyperconsole: rebuild {status} after {time.monotonic() - started:.1f}s; stopped it"
              if status != "failed" else "hyperconsole: the rebuild job ended without reporting its exit status").encode())
        record = {**record, "state": "done", "status": status, "duration": round(time.monotonic() - started, 3)}
        write_record(Path(job.record), record)
    duration = record.get("duration", time.monotonic() - started)
    return RebuildResult(job.label, tuple(record.get("argv", ())), record.get("status", "failed"),
                         record.get("returncode"), duration, tuple(lines), Path(job.log))


def _job_alive(job: Job, proc: subprocess.Popen | None, started: float) -> bool:
    if proc is not None:
        return proc.poll() is None
    pid = job.read_record().get("pid")
    if pid:
        return pid_alive(int(pid))
    return time.monotonic() - started < JOB_START_GRACE  # a unit still starting


def stop_job(job: Job, proc: subprocess.Popen | None = None) -> None:
    """Stop a job and everything it started: its unit, or its session (TERM, then KILL)."""
    if job.unit:
        subprocess.run(["systemctl", "stop", job.unit], capture_output=True, check=False, timeout=60)
    pid = proc.pid if proc is not None else job.read_record().get("pid")
    if not pid:
        return
    for sig, wait in ((signal.SIGTERM, TERMINATE_GRACE), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(int(pid), sig)
        except (ProcessLookupError, PermissionError):
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if (proc.poll() is not None) if proc is not None else not pid_alive(int(pid)):
                return
            time.sleep(0.05)


class RebuildRunner:
    """Starts rebuild jobs, one at a time host-wide, each logged under the state dir."""

    def __init__(
        self,
        nixos_dir: str | os.PathLike[str],
        rebuild_command: str = "nixos-rebuild",
        *,
        state_dir: Path | None = None,
        use_systemd: bool | None = None,
        hostname: str | None = None,
        lock_path: Path | None = None,
        target: TargetHost | None = None,
    ) -> None:
        self.nixos_dir = Path(nixos_dir)
        self.rebuild_command = rebuild_command
        self.state_dir = state_dir or paths.state_dir()
        self.use_systemd = under_systemd() if use_systemd is None else use_systemd
        self.hostname = hostname
        self.target = target  # activate on another machine (nixos-rebuild --target-host)
        # The lock lives next to the fragments so every user rebuilding this config shares it.
        self.lock_path = lock_path or (self.nixos_dir / "hyperconsole" / LOCK_NAME)

    @classmethod
    def from_config(cls, config, **kwargs) -> "RebuildRunner":
        target = getattr(config, "target_host", None)
        if target:
            kwargs.setdefault("target", TargetHost(target, config.use_remote_sudo, config.ssh_command))
            # A flake's configuration is the target's, named by the host (not this machine).
            kwargs.setdefault("hostname", config.host_name)
        return cls(config.nixos_dir, config.rebuild_command, **kwargs)

    @property
    def log_dir(self) -> Path:
        return self.state_dir / "rebuilds"

    def argv(self, action: str, generation: int | None = None) -> list[str]:
        argv = rebuild_argv(self.rebuild_command, self.nixos_dir, action, hostname=self.hostname, generation=generation)
        if self.target is not None:
            argv = self.target.rebuild_argv(argv, len(split_command(self.rebuild_command)))
        return argv

    def lock_file(self) -> Path:
        """Beside the fragments; in our state dir when that dir cannot be written (read-only)."""
        try:
            safefs.ensure_dir(self.lock_path.parent)
            os.close(safefs.open_file(self.lock_path, os.O_RDWR | os.O_CREAT))
            return self.lock_path
        except OSError:
            safefs.ensure_private_dir(self.state_dir)
            return self.state_dir / "rebuild.lock"

    def hold_lock(self, wait: float, holder: str):
        return rebuild_lock(self.lock_file(), wait, holder)

    def job_argv(self, job: Job, argv: Sequence[str], *, lock: bool = True, lock_wait: float = 0.0) -> list[str]:
        """The detached wrapper's command line (inside a transient unit under systemd)."""
        wrapper = [sys.executable, "-m", JOB_MODULE, "--label", job.label, "--log", job.log, "--record", job.record]
        if lock:
            wrapper += ["--lock", str(self.lock_file()), "--lock-wait", f"{lock_wait:g}"]
        wrapper += ["--", *argv]
        return systemd_wrap(wrapper, job.unit, f"hyperconsole {job.label}") if job.unit else wrapper

    def start(self, argv: Sequence[str], label: str, *, lock: bool = True,
              lock_wait: float = 0.0) -> tuple[Job, subprocess.Popen | None]:
        """Start a detached job. With lock=False the caller already holds the rebuild lock for
        it (a trial holds it for its whole life) and must outlive the job."""
        check_runnable(argv)
        safefs.ensure_private_dir(self.log_dir)
        stamp = _now_stamp()
        unit = f"hyperconsole-{label}-{stamp.replace('.', '-').lower()}" if self.use_systemd else None
        job = Job(label, str(self.log_dir / f"{stamp}-{label}.log"), str(self.log_dir / f"{stamp}-{label}.json"), unit)
        launch = self.job_argv(job, argv, lock=lock, lock_wait=lock_wait)
        fd = open_log(Path(job.log), create=True)
        try:
            os.write(fd, f"$ {shlex.join(argv)}\n".encode())
            if unit is None:
                # Own session, no terminal, no pipe: a dying console, a SIGHUP or a closed SSH
                # session reaches neither the wrapper nor the rebuild.
                return job, subprocess.Popen(launch, stdin=subprocess.DEVNULL, stdout=fd, stderr=fd,
                                             start_new_session=True, close_fds=True)
            done = proc.run(launch, LAUNCH_TIMEOUT)
        except subprocess.TimeoutExpired:
            raise HyperconsoleError(f"systemd-run did not start the rebuild unit within {LAUNCH_TIMEOUT:.0f} s") from None
        except OSError as exc:
            raise HyperconsoleError(f"cannot run {launch[0]}: {exc.strerror or exc}", hint="check --rebuild-cmd") from exc
        finally:
            os.close(fd)
        if done.returncode != 0:
            raise HyperconsoleError(f"cannot start the rebuild unit: {proc.text(done.stderr).strip()[:200]}")
        return job, None

    def run(
        self,
        action: str,
        *,
        on_line: Callable[[RebuildLine], None] | None = None,
        timeout: float | None = None,
        cancel: threading.Event | None = None,
        generation: int | None = None,
    ) -> RebuildResult:
        return self.run_argv(self.argv(action, generation), action, on_line=on_line, timeout=timeout, cancel=cancel)

    def run_argv(
        self,
        argv: Sequence[str],
        label: str,
        *,
        on_line: Callable[[RebuildLine], None] | None = None,
        timeout: float | None = None,
        cancel: threading.Event | None = None,
        lock: bool = True,
        lock_wait: float = 0.0,
        on_start: Callable[[Job], None] | None = None,
    ) -> RebuildResult:
        """Run any command (rebuild or revert) as a job and follow it to its end."""
        job, proc = self.start(argv, label, lock=lock, lock_wait=lock_wait)
        if on_start is not None:
            on_start(job)
        return follow(job, on_line=on_line, timeout=timeout, cancel=cancel, proc=proc, owner=True)

    def past_runs(self, limit: int = 20) -> list[dict]:
        """The newest runs (status, duration, log path), newest first."""
        if not self.log_dir.is_dir():
            return []
        records = (read_record(path) for path in sorted(self.log_dir.glob("*.json"), reverse=True)[:limit])
        return [record for record in records if record]


# -- generations ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Generation:
    number: int
    date: datetime
    path: Path  # the profile link, e.g. /nix/var/nix/profiles/system-42-link
    current: bool
    booted: bool


def list_generations(profiles_dir: Path = SYSTEM_PROFILES, booted_link: Path = BOOTED_SYSTEM) -> list[Generation]:
    """System generations from the `system-N-link` profile links, oldest first."""
    if not profiles_dir.is_dir():
        raise HyperconsoleError(f"no system profiles in {profiles_dir}", hint="is this a NixOS host?")
    try:
        current_name = os.readlink(profiles_dir / "system")
    except OSError:
        current_name = None
    booted_target = os.path.realpath(booted_link) if os.path.lexists(booted_link) else None
    generations = []
    for link in profiles_dir.iterdir():
        match = _GENERATION_LINK.match(link.name)
        if not match:
            continue
        stamp = datetime.fromtimestamp(link.lstat().st_mtime, tz=timezone.utc)
        generations.append(
            Generation(
                number=int(match.group(1)),
                date=stamp,
                path=link,
                current=current_name is not None and os.path.basename(current_name) == link.name,
                booted=booted_target is not None and os.path.realpath(link) == booted_target,
            )
        )
    return sorted(generations, key=lambda g: g.number)


def find_generation(generations: list[Generation], number: int) -> Generation:
    for generation in generations:
        if generation.number == number:
            return generation
    raise ValidationError(f"there is no system generation {number}", hint="see `hyperconsole generations`")


def closure_diff_argv(a: Path, b: Path) -> list[str]:
    """nvd or dix when installed (readable package-level diffs), else Nix's own diff-closures."""
    if shutil.which("nvd"):
        return ["nvd", "diff", str(a), str(b)]
    if shutil.which("dix"):
        return ["dix", str(a), str(b)]
    return ["nix", "--extra-experimental-features", "nix-command", "store", "diff-closures", str(a), str(b)]


def diff_generations(a: Generation, b: Generation, *, timeout: float = 120.0) -> str:
    """Text describing what changed from generation a to b."""
    target_a, target_b = Path(os.path.realpath(a.path)), Path(os.path.realpath(b.path))
    if not str(target_a).startswith("/nix/store/") or not str(target_b).startswith("/nix/store/"):
        return _diff_trees(target_a, target_b)
    argv = closure_diff_argv(target_a, target_b)
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except FileNotFoundError as exc:
        raise HyperconsoleError(f"cannot diff closures: {argv[0]} is not installed") from exc
    except subprocess.TimeoutExpired as exc:
        raise HyperconsoleError(f"diffing closures took longer than {timeout:.0f}s") from exc
    if done.returncode != 0:
        detail = (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1]
        raise HyperconsoleError(f"{argv[0]} failed: {detail}")
    return done.stdout


def _diff_trees(a: Path, b: Path) -> str:
    """Demo generations are plain directories of fragment copies: diff their files."""
    import difflib

    out: list[str] = []
    names = sorted({p.relative_to(a).as_posix() for p in a.rglob("*") if p.is_file()} | {p.relative_to(b).as_posix() for p in b.rglob("*") if p.is_file()})
    for name in names:
        old = (a / name).read_text(encoding="utf-8", errors="replace").splitlines(keepends=True) if (a / name).is_file() else []
        new = (b / name).read_text(encoding="utf-8", errors="replace").splitlines(keepends=True) if (b / name).is_file() else []
        out.extend(difflib.unified_diff(old, new, fromfile=f"a/{name}", tofile=f"b/{name}"))
    return "".join(out) or "no differences\n"


def rollback_argvs(rebuild_command: str, nixos_dir: Path, generation: int | None, profiles_dir: Path = SYSTEM_PROFILES) -> list[list[str]]:
    """Commands that roll back: to the previous generation, or to a given one.

    nixos-rebuild only knows "the previous one", so a given generation is selected with
    nix-env --switch-generation and activated with that generation's switch-to-configuration.
    Other commands (the demo) get `rollback N`.
    """
    argv = split_command(rebuild_command)
    if generation is None or os.path.basename(argv[0]) != "nixos-rebuild":
        return [rebuild_argv(rebuild_command, nixos_dir, "rollback", generation=generation)]
    system = profiles_dir / "system"
    return [
        ["nix-env", "--profile", str(system), "--switch-generation", str(generation)],
        [str(system / "bin" / "switch-to-configuration"), "switch"],
    ]


__all__ = [
    "ACTIONS", "Generation", "Job", "RebuildBusyError", "RebuildLine", "RebuildResult", "RebuildRunner",
    "closure_diff_argv", "diff_generations", "find_generation", "follow", "list_generations", "rebuild_argv",
    "rollback_argvs", "run_job", "stop_job", "systemd_wrap", "under_systemd",
]
