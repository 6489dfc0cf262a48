"""restic, the repository: one wrapper for every command hyperconsole runs (restic 0.14 and later).

- The password is passed as a file (RESTIC_PASSWORD_FILE), never in argv or the environment;
  RESTIC_PASSWORD/RESTIC_PASSWORD_COMMAND inherited from the caller are dropped.
- Errors become one line: wrong password, no repository (or not initialised), locked, unknown
  snapshot; anything else is restic's own last `Fatal:` line.
- A repository found locked is unlocked with plain `restic unlock`, which removes only the locks
  restic itself judges stale (its process gone on this host, or too old), and the command is
  tried once more; a live lock is reported, never removed.
- Every command has a timeout; a long one can be cancelled (threading.Event): restic gets SIGINT
  first, so it removes its own lock, then SIGKILL.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Callable, Iterable

from hyperconsole import names, paths, safefs
from hyperconsole.errors import HyperconsoleError, ValidationError

DEFAULT_TIMEOUT = 600.0
LONG_TIMEOUT = 24 * 3600.0
STOP_GRACE = 10.0


class ResticError(HyperconsoleError):
    """restic refused or failed; the message is one line."""


class WrongPassword(ResticError):
    pass


class NoRepository(ResticError):
    pass


class RepositoryLocked(ResticError):
    pass


class UnknownSnapshot(ResticError):
    pass


class Cancelled(ResticError):
    pass


def tag(key: str, value: str) -> str:
    """A `key=value` tag; ',' separates tags in restic's arguments, so it is percent-encoded."""
    return f"{key}={value.replace('%', '%25').replace(',', '%2C')}"


def _tag_filter(tags: Iterable[str]) -> list[str]:
    """One `--tag a,b` argument: restic ORs repeated --tag options and ANDs the tags of one."""
    tags = list(tags)
    return [f"--tag={','.join(tags)}"] if tags else []


@dataclass(frozen=True)
class Snapshot:
    id: str
    short_id: str
    time: str  # RFC 3339, as restic writes it
    hostname: str
    paths: tuple[str, ...]
    tags: tuple[str, ...]

    def tag(self, key: str) -> str:
        """The value of a `key=value` tag ('' when absent)."""
        prefix = key + "="
        raw = next((t[len(prefix):] for t in self.tags if t.startswith(prefix)), "")
        return raw.replace("%2C", ",").replace("%25", "%")

    @classmethod
    def from_json(cls, data: dict) -> "Snapshot":
        return cls(id=data["id"], short_id=data.get("short_id") or data["id"][:8], time=data["time"],
                   hostname=data.get("hostname", ""), paths=tuple(data.get("paths") or ()),
                   tags=tuple(data.get("tags") or ()))


@dataclass(frozen=True)
class BackupSummary:
    snapshot_id: str
    data_added: int
    total_bytes: int
    duration: float


@dataclass(frozen=True)
class Progress:
    bytes_done: int
    seconds: float


@dataclass(frozen=True)
class ForgetGroup:
    """One group of `forget --dry-run`: what stays (with the rules that keep it) and what goes."""

    paths: tuple[str, ...]
    tags: tuple[str, ...]
    keep: tuple[tuple[Snapshot, tuple[str, ...]], ...]
    remove: tuple[Snapshot, ...]


@dataclass(frozen=True)
class Stats:
    restore_size: int  # what the snapshots hold, as restored
    raw_size: int      # what the repository stores (after dedup and compression)
    snapshots: int

    @property
    def ratio(self) -> float:
        return self.restore_size / self.raw_size if self.raw_size else 0.0


def create_password_file(path: str) -> None:
    """A new random password in a new 0600 file; an existing file is never overwritten."""
    target = Path(names.absolute_path(path, "password file"))
    if target.exists() or target.is_symlink():
        raise ValidationError(f"{target} already exists; not overwriting a repository password")
    if not target.parent.exists():
        safefs.ensure_private_dir(target.parent)
    safefs.atomic_write(target, (secrets.token_urlsafe(32) + "\n").encode(), safefs.PRIVATE_FILE_MODE)


def _classify(stderr: str, location: str) -> ResticError:
    text = stderr.strip()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if "wrong password" in text:
        return WrongPassword(f"wrong password for the repository {location}", hint="check the job's password file")
    if "Is there a repository at the following location?" in text or "repository does not exist" in text:
        return NoRepository(f"no restic repository at {location}",
                            hint="initialise it with `hyperconsole backup init JOB`")
    if "repository is already locked" in text or "unable to create lock" in text:
        who = next((line for line in lines if line.startswith("lock was created at")), "")
        return RepositoryLocked(f"the repository {location} is locked by another restic process"
                                + (f" ({who})" if who else ""), hint="wait for it to finish")
    if "no matching ID found" in text or "invalid id" in text or "no snapshot found" in text:
        which = re.search(r'invalid id "([^"]*)"', text)
        return UnknownSnapshot(f"no snapshot {which.group(1) if which else ''} in {location}".replace("  ", " "))
    if "password file" in text and ("no such file" in text or "permission denied" in text):
        return ResticError(f"cannot read the password file: {lines[-1] if lines else text}")
    fatal = [line.removeprefix("Fatal: ") for line in lines if line.startswith("Fatal:")]
    return ResticError("restic: " + (fatal[-1] if fatal else (lines[-1] if lines else "failed without a message")))


@dataclass
class Repository:
    location: str
    password_file: str
    compression: str = "auto"
    binary: str = "restic"
    cache_dir: str | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    # -- plumbing -------------------------------------------------------------------------------

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("RESTIC_")}
        env.update(RESTIC_REPOSITORY=self.location, RESTIC_PASSWORD_FILE=self.password_file,
                   RESTIC_CACHE_DIR=self.cache_dir or str(paths.state_dir() / "restic-cache"))
        return env

    def argv(self, *args: str) -> list[str]:
        """restic's command line; under `setpriv --pdeathsig KILL` where it exists, so restic dies
        with the process that started it: a killed runner must never leave restic to read the end
        of its stdin and store a truncated archive as a snapshot."""
        binary = shutil.which(self.binary)
        if binary is None:
            raise ResticError("restic is not installed", hint="install the restic package")
        setpriv = shutil.which("setpriv")
        prefix = [setpriv, "--pdeathsig", "KILL", "--"] if setpriv else []
        return [*prefix, binary, "--compression", self.compression, *args]

    def _check_password_file(self) -> None:
        try:
            with open(self.password_file, "rb") as f:
                if not f.read(4096).strip():
                    raise ResticError(f"the password file {self.password_file} is empty")
        except FileNotFoundError:
            raise ResticError(f"the password file {self.password_file} does not exist",
                              hint="create it (0600) or use `backup job add --create-password`") from None
        except PermissionError:
            raise ResticError(f"cannot read the password file {self.password_file}: permission denied") from None

    def run(self, *args: str, timeout: float = DEFAULT_TIMEOUT, unlock_stale: bool = True) -> str:
        """Run one restic command to completion; stdout, or a classified ResticError."""
        self._check_password_file()
        try:
            done = subprocess.run(self.argv(*args), capture_output=True, text=True, env=self.env(),
                                  timeout=timeout, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise ResticError(f"restic {args[0]} did not finish within {timeout:.0f}s") from None
        if done.returncode == 0:
            return done.stdout
        error = _classify(done.stderr, self.location)
        if isinstance(error, RepositoryLocked) and unlock_stale and self.unlock():
            return self.run(*args, timeout=timeout, unlock_stale=False)
        raise error

    def json(self, *args: str, timeout: float = DEFAULT_TIMEOUT):
        out = self.run(*args, "--json", timeout=timeout)
        try:
            return json.loads(out.strip().splitlines()[-1] if out.strip() else "null")
        except ValueError as exc:
            raise ResticError(f"restic {args[0]} gave output that is not JSON") from exc

    def unlock(self) -> bool:
        """`restic unlock`: removes only the locks restic says are stale. True when it removed any."""
        try:
            out = self.run("unlock", unlock_stale=False, timeout=120)
        except ResticError:
            return False
        return "successfully removed" in out and "0 locks" not in out

    # -- commands ---------------------------------------------------------------------------------

    def exists(self) -> bool:
        try:
            self.run("cat", "config", timeout=120)
        except NoRepository:
            return False
        return True

    def init(self) -> None:
        """A new repository in format 2 (compression); refused when one is there already."""
        self._check_password_file()
        if self.exists():
            raise ResticError(f"a restic repository already exists at {self.location}")
        self.run("init", "--repository-version", "2", timeout=300)

    def snapshots(self, tags: Iterable[str] = ()) -> list[Snapshot]:
        args = ["snapshots", *_tag_filter(tags)]
        data = self.json(*args) or []
        return sorted((Snapshot.from_json(item) for item in data), key=lambda s: s.time)

    def snapshot(self, ident: str) -> Snapshot:
        if not re.fullmatch(r"[0-9a-f]{4,64}", ident or ""):
            raise UnknownSnapshot(f"{ident[:70]!r} is not a snapshot id", hint="ids are hexadecimal, e.g. 9c2b184c")
        found = [s for s in self.snapshots() if s.id.startswith(ident)]
        if len(found) != 1:
            raise UnknownSnapshot(f"no snapshot {ident} in {self.location}" if not found else
                                  f"snapshot id {ident} is ambiguous", hint="`hyperconsole backup snapshots` lists them")
        return found[0]

    def stats(self, tags: Iterable[str] = ()) -> Stats:
        tag_args = _tag_filter(tags)
        raw = self.json("stats", "--mode", "raw-data", *tag_args) or {}
        restored = self.json("stats", "--mode", "restore-size", *tag_args) or {}
        return Stats(restore_size=int(restored.get("total_size", 0)), raw_size=int(raw.get("total_size", 0)),
                     snapshots=int(restored.get("snapshots_count", raw.get("snapshots_count", 0))))

    def snapshot_size(self, ident: str) -> int:
        return int((self.json("stats", "--mode", "restore-size", ident) or {}).get("total_size", 0))

    def forget(self, flags: list[str], tags: Iterable[str], *, dry_run: bool, prune: bool = False) -> list[ForgetGroup]:
        args = ["forget", *flags, *_tag_filter(tags), "--group-by", "host,paths"]
        if dry_run:
            args.append("--dry-run")
        if prune and not dry_run:
            args.append("--prune")
        out = self.run(*args, "--json", timeout=LONG_TIMEOUT)
        line = next((ln for ln in out.splitlines() if ln.startswith("[")), "[]")
        groups = []
        for group in json.loads(line) or []:
            reasons = {r["snapshot"]["id"] if "id" in r["snapshot"] else r["snapshot"]["time"]: tuple(r.get("matches") or ())
                       for r in group.get("reasons") or []}
            keep = []
            for item in group.get("keep") or []:
                snap = Snapshot.from_json(item)
                keep.append((snap, reasons.get(snap.id) or reasons.get(snap.time) or ()))
            groups.append(ForgetGroup(paths=tuple(group.get("paths") or ()), tags=tuple(group.get("tags") or ()),
                                      keep=tuple(keep), remove=tuple(Snapshot.from_json(s) for s in group.get("remove") or ())))
        return groups

    def check(self, subset: str = "5%", timeout: float = LONG_TIMEOUT) -> str:
        out = self.run("check", f"--read-data-subset={subset}", timeout=timeout)
        lines = [line for line in out.splitlines() if line.strip()]
        return lines[-1] if lines else "no errors were found"

    # -- streaming commands -----------------------------------------------------------------------

    def backup_stdin(self, filename: str, tags: list[str], write: Callable[[IO[bytes]], None], *,
                     when: str | None = None, on_progress: Callable[[Progress], None] | None = None,
                     cancel: threading.Event | None = None, timeout: float = LONG_TIMEOUT) -> BackupSummary:
        """`restic backup --stdin`, fed by `write(pipe)`; progress from restic's JSON status lines."""
        args = ["backup", "--stdin", "--stdin-filename", filename, "--json", "--host", os.uname().nodename]
        for tag in tags:
            args += ["--tag", tag]
        if when:
            args += ["--time", when]
        summary: dict = {}
        started = time.monotonic()

        def on_line(data: dict) -> None:
            if data.get("message_type") == "status" and on_progress is not None:
                on_progress(Progress(int(data.get("bytes_done") or 0), time.monotonic() - started))
            elif data.get("message_type") == "summary":
                summary.update(data)

        self._stream(args, on_json=on_line, feed=write, cancel=cancel, timeout=timeout)
        if not summary.get("snapshot_id"):
            raise ResticError("restic backup ended without making a snapshot")
        return BackupSummary(summary["snapshot_id"], int(summary.get("data_added", 0)),
                             int(summary.get("total_bytes_processed", 0)), float(summary.get("total_duration", 0.0)))

    def dump(self, snapshot: str, path: str, read: Callable[[IO[bytes]], None], *,
             cancel: threading.Event | None = None, timeout: float = LONG_TIMEOUT) -> None:
        """`restic dump SNAPSHOT PATH`, its stdout handed to `read(pipe)`."""
        self._stream(["dump", snapshot, path], read_stdout=read, cancel=cancel, timeout=timeout)

    def _stream(self, args: list[str], *, on_json: Callable[[dict], None] | None = None,
                feed: Callable[[IO[bytes]], None] | None = None, read_stdout: Callable[[IO[bytes]], None] | None = None,
                cancel: threading.Event | None = None, timeout: float) -> None:
        self._check_password_file()
        proc = subprocess.Popen(self.argv(*args), stdin=subprocess.PIPE if feed else subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=self.env())
        for pipe in (proc.stdin if feed else None, proc.stdout if read_stdout else None):
            _widen(pipe)
        stderr_chunks: list[bytes] = []
        failure: list[BaseException] = []

        def drain_stderr() -> None:
            assert proc.stderr is not None
            for chunk in iter(lambda: proc.stderr.read(8192), b""):
                stderr_chunks.append(chunk)

        def pump_stdout() -> None:
            assert proc.stdout is not None
            try:
                if read_stdout is not None:
                    read_stdout(proc.stdout)
                    proc.stdout.read()  # whatever the reader left, so restic is never blocked
                    return
                for raw in proc.stdout:
                    try:
                        data = json.loads(raw)
                    except ValueError:
                        continue
                    if on_json is not None and isinstance(data, dict):
                        on_json(data)
            except BaseException as exc:  # noqa: BLE001 - handed to the caller below
                failure.append(exc)
                _stop(proc)

        def pump_stdin() -> None:
            assert proc.stdin is not None
            try:
                feed(proc.stdin)
                proc.stdin.close()
            except BrokenPipeError:
                pass  # restic ended early; its exit status says why
            except BaseException as exc:  # noqa: BLE001
                failure.append(exc)
                _stop(proc)

        threads = [threading.Thread(target=drain_stderr, daemon=True), threading.Thread(target=pump_stdout, daemon=True)]
        if feed is not None:
            threads.append(threading.Thread(target=pump_stdin, daemon=True))
        for t in threads:
            t.start()
        deadline = time.monotonic() + timeout
        try:
            while proc.poll() is None:
                if cancel is not None and cancel.is_set():
                    _stop(proc)
                    raise Cancelled("cancelled; restic stopped and nothing was kept")
                if time.monotonic() > deadline:
                    _stop(proc)
                    raise ResticError(f"restic {args[0]} did not finish within {timeout:.0f}s")
                time.sleep(0.05)
        except BaseException:
            _stop(proc)
            raise
        finally:
            for t in threads:
                t.join(timeout=STOP_GRACE)
            for pipe in (proc.stdin, proc.stdout, proc.stderr):
                try:
                    if pipe:
                        pipe.close()
                except OSError:
                    pass
        if failure:
            raise failure[0]
        if proc.returncode != 0:
            raise _classify(b"".join(stderr_chunks).decode("utf-8", "replace"), self.location)


PIPE_SIZE = 1024**2  # Linux's default pipe-max-size: a MiB in flight instead of 64 KiB


def _widen(pipe) -> None:
    """A larger pipe buffer to restic, so its reading and ours overlap (Linux; elsewhere a no-op)."""
    if pipe is None or not hasattr(fcntl, "F_SETPIPE_SZ"):
        return
    try:
        fcntl.fcntl(pipe.fileno(), fcntl.F_SETPIPE_SZ, PIPE_SIZE)
    except OSError:
        pass  # above /proc/sys/fs/pipe-max-size for this user: the default stays


def _stop(proc: subprocess.Popen) -> None:
    """SIGINT (restic removes its lock), then SIGKILL after a grace period."""
    if proc.poll() is not None:
        return
    try:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=STOP_GRACE)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
