"""The spool where an operator hands a request to the root request unit, and where the unit
leaves that request's log and outcome for the operator to follow.

The directory (`/var/lib/hyperconsole/requests`, 1730 root:<operators group>, made by the NixOS
module) lets group members create files but not list it, nor remove or replace another's file
(sticky). A request is `<id>.json`, created by its writer (so the file's owner says who asked),
mode 0600. The unit creates `<id>.log` first (O_EXCL: an id is handled once, a replay is refused),
then reads and removes the request, never through a link, and writes `<id>.status` (JSON: state,
user, what, ok, error, outcome). Both are root's, 0640 in the operators group.

The module also writes /etc/hyperconsole/privileged.json (spool, group, unit): its presence is how
the console knows the unit is installed.
"""

from __future__ import annotations

import grp
import json
import os
import pwd
import secrets
import stat
import time
from dataclasses import dataclass
from pathlib import Path

import msgspec

from hyperconsole import paths, safefs
from hyperconsole.changes.requests import Request
from hyperconsole.errors import HyperconsoleError, ValidationError

MARKER_ENV = "HYPERCONSOLE_PRIVILEGED"
MAX_REQUEST_BYTES = 65536
MAX_AGE = 600.0  # a request older than this (or from the future by more than CLOCK_SKEW) is refused
CLOCK_SKEW = 60.0
SHARED_MODE = 0o640
_ID_CHARS = frozenset("0123456789abcdef")
_PATH_DIR = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class Refused(HyperconsoleError):
    """The request unit will not run this request (who asked, what, or the file itself)."""


def marker_path() -> Path:
    return Path(os.environ.get(MARKER_ENV) or paths.SYSTEM_CONFIG_DIR / "privileged.json")


@dataclass(frozen=True)
class Marker:
    spool: Path
    group: str
    unit: str = "hyperconsole-request@"

    def unit_name(self, request_id: str) -> str:
        return f"{self.unit}{check_id(request_id)}.service"


def read_marker(path: Path | None = None) -> Marker | None:
    """What the NixOS module says about the request unit; None when it is not installed."""
    path = path or marker_path()
    try:
        data = safefs.read_bytes(path)
    except OSError as exc:
        raise HyperconsoleError(f"cannot read {path}: {exc.strerror or exc}") from exc
    if data is None:
        return None
    try:
        raw = json.loads(data)
        return Marker(Path(raw["spool"]), str(raw["group"]), str(raw.get("unit", "hyperconsole-request@")))
    except (ValueError, KeyError, TypeError) as exc:
        raise HyperconsoleError(f"{path} is damaged", hint="it is written by hyperconsole's NixOS module") from exc


def new_id() -> str:
    return secrets.token_hex(16)


def check_id(text: str) -> str:
    if not isinstance(text, str) or len(text) != 32 or not set(text) <= _ID_CHARS:
        raise ValidationError(f"invalid request id {text!r:.60}", hint="32 lower-case hex digits")
    return text


def log_name(request_id: str) -> str:
    return f"{check_id(request_id)}.log"


def status_name(request_id: str) -> str:
    return f"{check_id(request_id)}.status"


# -- the operator's side ----------------------------------------------------------------------------


def hand_over(spool: Path, request: Request) -> None:
    """Write `<id>.json` (new, never an existing file or a link), 0600, owned by the caller. The
    spool is opened with O_PATH: its members may search it but not read it."""
    data = msgspec.json.encode(request)
    dir_fd = os.open(spool, _PATH_DIR)
    try:
        fd = os.open(f"{check_id(request.id)}.json", os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o600, dir_fd=dir_fd)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
    finally:
        os.close(dir_fd)


def open_shared(spool: Path, name: str) -> int | None:
    """Open one of the unit's files for reading, never through a link; None when absent."""
    dir_fd = os.open(spool, _PATH_DIR)
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, dir_fd=dir_fd)
    except FileNotFoundError:
        return None
    finally:
        os.close(dir_fd)
    if not stat.S_ISREG(os.fstat(fd).st_mode) or os.fstat(fd).st_uid != 0:
        os.close(fd)
        raise HyperconsoleError(f"{spool / name} is not the request unit's file; not reading it")
    return fd


def read_status(spool: Path, request_id: str) -> dict | None:
    fd = open_shared(spool, status_name(request_id))
    if fd is None:
        return None
    with os.fdopen(fd, "rb") as handle:
        try:
            return json.loads(handle.read())
        except ValueError:
            return None


# -- the root side --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Handed:
    request: Request
    uid: int
    user: str


def requester(uid: int, group: str) -> str:
    """The user behind a uid, if root or a member of `group` (primary or supplementary)."""
    try:
        user = pwd.getpwuid(uid)
    except KeyError:
        raise Refused(f"the request file belongs to uid {uid}, which is no user") from None
    if uid == 0:
        return user.pw_name
    try:
        members = grp.getgrnam(group)
    except KeyError:
        raise Refused(f"the operators group {group} does not exist") from None
    if user.pw_gid != members.gr_gid and user.pw_name not in members.gr_mem:
        raise Refused(f"the request file belongs to {user.pw_name}, who is not in {group}")
    return user.pw_name


class Outputs:
    """The unit's files for one request: `<id>.log` (claimed first: O_EXCL) and `<id>.status`."""

    def __init__(self, spool: Path, request_id: str, gid: int) -> None:
        self.spool, self.id, self.gid = Path(spool), check_id(request_id), gid
        with safefs.open_dir(self.spool) as dir_fd:
            try:
                self._log = safefs.open_in(dir_fd, log_name(request_id), os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND,
                                           SHARED_MODE, self.spool / log_name(request_id))
            except FileExistsError:
                raise Refused(f"request {request_id} was handled already; not running it again") from None
        os.fchown(self._log, 0, gid)
        os.fchmod(self._log, SHARED_MODE)

    def line(self, text: str) -> None:
        os.write(self._log, (text.rstrip("\n") + "\n").encode("utf-8", "replace"))

    def status(self, **fields) -> None:
        data = (json.dumps({"id": self.id, "updated": time.time(), **fields}, indent=1) + "\n").encode("utf-8")
        with safefs.Transaction(self.spool) as txn:
            temp = txn.write(status_name(self.id), data, SHARED_MODE)
            os.chown(temp, 0, self.gid, follow_symlinks=False)
            txn.commit()

    def close(self) -> None:
        os.close(self._log)


def take(spool: Path, request_id: str, group: str, *, now: float | None = None) -> Handed:
    """Read `<id>.json` (no link, a regular file with one link, not writable by others, from a
    member of `group`, a valid request with this id and fresh), then remove it. Refused otherwise."""
    name = f"{check_id(request_id)}.json"
    with safefs.open_dir(spool) as dir_fd:
        try:
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd)
        except FileNotFoundError:
            raise Refused(f"there is no request {request_id}") from None
        except OSError as exc:
            if stat.S_ISLNK(os.lstat(name, dir_fd=dir_fd).st_mode):
                os.unlink(name, dir_fd=dir_fd)
                raise Refused("the request file is a symbolic link; refusing to follow it") from None
            raise
        try:
            info = os.fstat(fd)
            try:
                if not stat.S_ISREG(info.st_mode):
                    raise Refused("the request is not a regular file")
                if info.st_nlink != 1:
                    raise Refused("the request file has other hard links")
                if info.st_mode & 0o022:
                    raise Refused("the request file is writable by others than its owner")
                user = requester(info.st_uid, group)
                data = os.read(fd, MAX_REQUEST_BYTES + 1)
            finally:
                os.unlink(name, dir_fd=dir_fd)  # a request is read once, whatever becomes of it
        finally:
            os.close(fd)
    if len(data) > MAX_REQUEST_BYTES:
        raise Refused(f"the request is larger than {MAX_REQUEST_BYTES} bytes")
    try:
        request = msgspec.json.decode(data, type=Request)
    except msgspec.DecodeError as exc:
        raise Refused(f"the request is malformed: {str(exc)[:200]}") from None
    if request.id != request_id:
        raise Refused(f"the request names id {request.id}, not {request_id}")
    age = (time.time() if now is None else now) - request.created
    if age > MAX_AGE or age < -CLOCK_SKEW:
        raise Refused(f"the request was written {age:.0f}s ago; requests are taken within {MAX_AGE:.0f}s")
    return Handed(request, info.st_uid, user)
