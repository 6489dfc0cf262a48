"""RebuildRunner (dry-build/test/switch/boot/rollback), generations, closure diffs.

Designed to be called from a thread worker: `run()` blocks, calls `on_line(RebuildLine)` for every
output line as it arrives (with elapsed seconds), honours a timeout and a cancel Event, and returns
a RebuildResult. It never raises for a failing rebuild (that is a result); it raises
HyperconsoleError only when the rebuild could not be started (busy, command missing).
"""

from __future__ import annotations

import json
import os
import queue
import re
import shlex
import shutil
import signal
import socket
import subprocess
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterator, Sequence

from hyperconsole import paths, safefs
from hyperconsole.errors import HyperconsoleError, ValidationError
from hyperconsole.nixos import locking

ACTIONS = ("dry-build", "test", "switch", "boot", "rollback")
SYSTEM_PROFILES = Path("/nix/var/nix/profiles")
BOOTED_SYSTEM = Path("/run/booted-system")
TERMINATE_GRACE = 5.0
_ERROR_LINE = re.compile(r"(^|\s)error:", re.IGNORECASE)
_GENERATION_LINK = re.compile(r"system-(\d+)-link\Z")


class RebuildBusyError(HyperconsoleError):
    """Another rebuild holds the host-wide rebuild lock."""


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
    """Run argv as a transient service so a dropped SSH session does not kill the rebuild;
    --pipe streams its output to us, --wait returns its exit status, --collect cleans up even
    when it fails."""
    return [
        "systemd-run", f"--unit={unit}", f"--description={description}",
        "--pipe", "--wait", "--collect", "--quiet", "--service-type=exec",
        "--property=KillMode=mixed", "--", *argv,
    ]


def _now_stamp() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")


class RebuildRunner:
    """Runs the rebuild command, one at a time host-wide, logging every run under the state dir."""

    def __init__(
        self,
        nixos_dir: str | os.PathLike[str],
        rebuild_command: str = "nixos-rebuild",
        *,
        state_dir: Path | None = None,
        use_systemd: bool | None = None,
        hostname: str | None = None,
        lock_path: Path | None = None,
    ) -> None:
        self.nixos_dir = Path(nixos_dir)
        self.rebuild_command = rebuild_command
        self.state_dir = state_dir or paths.state_dir()
        self.use_systemd = under_systemd() if use_systemd is None else use_systemd
        self.hostname = hostname
        # The lock lives next to the fragments so every user rebuilding this config shares it.
        self.lock_path = lock_path or (self.nixos_dir / "hyperconsole" / ".rebuild.lock")

    @classmethod
    def from_config(cls, config, **kwargs) -> "RebuildRunner":
        return cls(config.nixos_dir, config.rebuild_command, **kwargs)

    @property
    def log_dir(self) -> Path:
        return self.state_dir / "rebuilds"

    def argv(self, action: str, generation: int | None = None) -> list[str]:
        return rebuild_argv(self.rebuild_command, self.nixos_dir, action, hostname=self.hostname, generation=generation)

    def launch_argv(self, argv: Sequence[str], label: str) -> list[str]:
        if not self.use_systemd:
            return list(argv)
        unit = f"hyperconsole-{label}-{_now_stamp().replace('.', '-').lower()}"
        return systemd_wrap(argv, unit, f"hyperconsole {label}")

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
        lock_wait: float = 0.0,
    ) -> RebuildResult:
        """Run any command (rebuild or revert) with the rebuild lock held, streaming its output."""
        with self._lock(lock_wait):
            return self._run_locked(list(argv), label, on_line, timeout, cancel)

    # -- internals ----------------------------------------------------------------------------

    @contextmanager
    def _lock(self, wait: float) -> Iterator[None]:
        """The host-wide rebuild lock; waits up to `wait` seconds, then RebuildBusyError."""
        path = self.lock_path
        try:
            safefs.ensure_dir(path.parent)
            os.close(safefs.open_file(path, os.O_RDWR | os.O_CREAT))
        except OSError:
            # Cannot share the lock beside the fragments (read-only dir): fall back to ours.
            path = self.state_dir / "rebuild.lock"
            safefs.ensure_private_dir(path.parent)
        with locking.held(path, wait, lambda holder: RebuildBusyError(
                f"another rebuild is running ({holder})", hint="wait for it to finish"),
                note=f"pid {os.getpid()}, since {time.strftime('%H:%M:%S')}", poll=0.1):
            yield

    def _run_locked(self, argv, label, on_line, timeout, cancel) -> RebuildResult:
        safefs.ensure_private_dir(self.log_dir)
        stamp = _now_stamp()
        log_path = self.log_dir / f"{stamp}-{label}.log"
        launch = self.launch_argv(argv, label)
        started = time.monotonic()
        lines: list[str] = []
        try:
            proc = subprocess.Popen(
                launch, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                start_new_session=True, close_fds=True,
            )
        except OSError as exc:
            raise HyperconsoleError(f"cannot run {launch[0]}: {exc.strerror or exc}", hint="check --rebuild-cmd") from exc

        pending: queue.Queue[bytes | None] = queue.Queue()

        def read_output() -> None:
            assert proc.stdout is not None
            for raw in iter(proc.stdout.readline, b""):
                pending.put(raw)
            pending.put(None)

        reader = threading.Thread(target=read_output, name=f"rebuild-{label}-output", daemon=True)
        reader.start()
        status = None
        with safefs.open_private_text(log_path, append=False) as log:
            log.write(f"$ {shlex.join(launch)}\n")
            try:
                status = self._pump(pending, started, lines, log, on_line, timeout, cancel)
            except BaseException:
                # A failing callback (or Ctrl-C) must not leave the rebuild running unattended.
                self._stop(proc, launch)
                raise
            if status is not None:
                self._stop(proc, launch)
                note = f"hyperconsole: rebuild {status} after {time.monotonic() - started:.1f}s; stopped it"
                lines.append(note)
                log.write(note + "\n")
                if on_line is not None:
                    on_line(RebuildLine(time.monotonic() - started, note))
            returncode = proc.wait()
            reader.join(timeout=1.0)
            duration = time.monotonic() - started
            if status is None:
                status = "succeeded" if returncode == 0 else "failed"
            log.write(f"hyperconsole: {status} (exit {returncode}) in {duration:.1f}s\n")
        record = {
            "action": label, "argv": list(launch), "status": status, "returncode": returncode,
            "duration": round(duration, 3), "started": stamp, "log": str(log_path),
        }
        safefs.atomic_write(self.log_dir / f"{stamp}-{label}.json", (json.dumps(record, indent=2) + "\n").encode(),
                            mode=safefs.PRIVATE_FILE_MODE)
        return RebuildResult(label, tuple(launch), status, returncode, duration, tuple(lines), log_path)

    @staticmethod
    def _pump(pending, started, lines, log, on_line, timeout, cancel) -> str | None:
        """Forward output lines until EOF (None) or until timeout/cancel (their status)."""
        while True:
            if timeout is not None and time.monotonic() - started > timeout:
                return "timed out"
            if cancel is not None and cancel.is_set():
                return "cancelled"
            try:
                raw = pending.get(timeout=0.1)
            except queue.Empty:
                continue
            if raw is None:
                return None
            text = raw.decode("utf-8", "replace").rstrip("\r\n")
            elapsed = time.monotonic() - started
            lines.append(text)
            log.write(f"[{elapsed:7.1f}s] {text}\n")
            log.flush()
            if on_line is not None:
                on_line(RebuildLine(elapsed, text))

    def _stop(self, proc: subprocess.Popen, launch: Sequence[str]) -> None:
        """Terminate the whole process group, then kill it if it does not exit in time. A
        transient unit outlives its systemd-run client, so it is stopped by name."""
        unit = next((a.split("=", 1)[1] for a in launch if a.startswith("--unit=")), None)
        if launch and launch[0] == "systemd-run" and unit:
            subprocess.run(["systemctl", "stop", unit], capture_output=True, check=False, timeout=60)
        for sig, wait in ((signal.SIGTERM, TERMINATE_GRACE), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                return
            try:
                proc.wait(timeout=wait)
                return
            except subprocess.TimeoutExpired:
                continue

    def past_runs(self, limit: int = 20) -> list[dict]:
        """The newest runs (status, duration, log path), newest first."""
        if not self.log_dir.is_dir():
            return []
        runs = []
        for path in sorted(self.log_dir.glob("*.json"), reverse=True)[:limit]:
            try:
                runs.append(json.loads(path.read_text(encoding="utf-8")))
            except (OSError, ValueError):
                continue
        return runs


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
    "ACTIONS", "Generation", "RebuildBusyError", "RebuildLine", "RebuildResult", "RebuildRunner",
    "closure_diff_argv", "diff_generations", "find_generation", "list_generations", "rebuild_argv",
    "rollback_argvs", "systemd_wrap", "under_systemd",
]
