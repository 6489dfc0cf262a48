"""File operations for every file the console writes; it often runs as root.

- No symbolic link is followed: a file is opened with O_NOFOLLOW relative to its directory, the
  directory itself opened with O_DIRECTORY|O_NOFOLLOW, so a link planted in a group-writable
  directory (`<nixos-dir>/hyperconsole`, the state dir) cannot redirect a write, a lock or a log.
  A file that is not a regular file, or that has other hard links, is not written either.
- New content goes to a temp file created with O_EXCL in the same directory, synced, and renamed
  into place: readers see the old or the new file, never a mix. `Transaction` does this for several
  files (and directories) at once: everything is written and synced first, then only renames
  follow, which need no free space, so a full disk leaves every file as it was.
- `private` files (logs, history copies) are 0600 in 0700 directories, tightened if found looser.
"""

from __future__ import annotations

import errno
import os
import secrets
import shutil
import stat
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Mapping

from hyperconsole.errors import HyperconsoleError

FILE_MODE = 0o644
DIR_MODE = 0o755
PRIVATE_FILE_MODE = 0o600
PRIVATE_DIR_MODE = 0o700
TEMP_SUFFIX = ".tmp"

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_WRITE_ACCESS = os.O_WRONLY | os.O_RDWR


class SymlinkError(HyperconsoleError):
    """A path the console writes is a symbolic link (possibly planted to redirect a root write)."""


def _symlink_error(path: Path) -> SymlinkError:
    return SymlinkError(f"{path} is a symbolic link; refusing to write through it",
                        hint="remove the link and check who created it")


def _is_link(path: str | os.PathLike[str], dir_fd: int | None = None) -> bool:
    """Whether `path` (relative to `dir_fd` when given) is a symbolic link; False when absent."""
    try:
        return stat.S_ISLNK(os.lstat(path, dir_fd=dir_fd).st_mode)
    except OSError:
        return False


@contextmanager
def open_dir(path: str | os.PathLike[str]) -> Iterator[int]:
    """A descriptor of the directory `path` itself, never of what a link there points to."""
    path = Path(path)
    try:
        fd = os.open(path, _DIR_FLAGS)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR) and _is_link(path):
            raise _symlink_error(path) from None
        raise
    try:
        yield fd
    finally:
        os.close(fd)


def ensure_dir(path: str | os.PathLike[str], mode: int = DIR_MODE, *, private: bool = False,
               parents: bool = False) -> Path:
    """Create `path` unless it exists (with `parents`, missing parents too, same mode; without,
    a missing parent is FileNotFoundError); refuse a symlink or a non-directory at `path` (its
    parents are the operator's choice, not checked). A private directory is 0700, tightened if
    found looser."""
    path = Path(path)
    mode = PRIVATE_DIR_MODE if private else mode
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        if parents:
            os.makedirs(path.parent, mode, exist_ok=True)
        try:
            os.mkdir(path, mode)
        except FileExistsError:
            pass
        info = os.lstat(path)
    if stat.S_ISLNK(info.st_mode):
        raise _symlink_error(path)
    if not stat.S_ISDIR(info.st_mode):
        raise HyperconsoleError(f"{path} is not a directory")
    if private and stat.S_IMODE(info.st_mode) & 0o077:
        with open_dir(path) as fd:
            os.fchmod(fd, PRIVATE_DIR_MODE)
    return path


def ensure_private_dir(path: str | os.PathLike[str]) -> Path:
    """A 0700 directory of the console's own state (missing parents created, 0700 as XDG asks)."""
    return ensure_dir(path, private=True, parents=True)


def _checked(fd: int, path: Path, flags: int) -> int:
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise HyperconsoleError(f"{path} is not a regular file; refusing to use it")
    if flags & _WRITE_ACCESS and info.st_nlink > 1:
        os.close(fd)
        raise HyperconsoleError(f"{path} has other hard links; refusing to write through it",
                                hint="remove it and check who created it")
    return fd


def open_in(dir_fd: int, name: str, flags: int, mode: int, shown: Path) -> int:
    """os.open of `name` in an open directory, never following a link (shown: the path for errors)."""
    try:
        fd = os.open(name, flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise _symlink_error(shown) from None
        raise
    return _checked(fd, shown, flags)


def open_file(path: str | os.PathLike[str], flags: int, mode: int = FILE_MODE, *, private: bool = False) -> int:
    """os.open without following a link at `path` or at its directory. A private file is created
    0600 and tightened to 0600 if found looser."""
    path = Path(path)
    mode = PRIVATE_FILE_MODE if private else mode
    with open_dir(path.parent) as dir_fd:
        fd = open_in(dir_fd, path.name, flags, mode, path)
    if private and flags & _WRITE_ACCESS and stat.S_IMODE(os.fstat(fd).st_mode) & 0o077:
        os.fchmod(fd, PRIVATE_FILE_MODE)
    return fd


def open_private(path: str | os.PathLike[str], flags: int) -> int:
    return open_file(path, flags, private=True)


def open_private_text(path: str | os.PathLike[str]):
    """A text stream appending to a private file (logs)."""
    return os.fdopen(open_private(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND), "a", encoding="utf-8")


def read_bytes(path: str | os.PathLike[str]) -> bytes | None:
    """The content of a regular file, None when it (or its directory) is absent; a link there is
    refused, not read."""
    try:
        fd = open_file(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        return None
    with os.fdopen(fd, "rb") as handle:
        return handle.read()


def _create(dir_fd: int, name: str, data: bytes, mode: int, shown: Path) -> None:
    """A new file (O_EXCL: never an existing one, nor a link) holding `data`, synced."""
    fd = open_in(dir_fd, name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode, shown)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fchmod(fd, mode)
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove_entry(dir_fd: int, name: str) -> None:
    """Remove a file, link or directory tree named in `dir_fd` (links are removed, not followed)."""
    try:
        info = os.lstat(name, dir_fd=dir_fd)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(info.st_mode):
        shutil.rmtree(name, dir_fd=dir_fd, ignore_errors=True)
    else:
        try:
            os.unlink(name, dir_fd=dir_fd)
        except FileNotFoundError:
            pass


def remove_temps(directory: str | os.PathLike[str]) -> None:
    """Remove temp entries a dead writer left in `directory` (call with the writers' lock held)."""
    with open_dir(directory) as dir_fd:
        for name in os.listdir(dir_fd):
            if name.startswith(".") and name.endswith(TEMP_SUFFIX):
                _remove_entry(dir_fd, name)


def remove_tree(directory: str | os.PathLike[str], name: str) -> None:
    """Remove `name` inside `directory` (a tree, a file or a link; never what a link points to)."""
    with open_dir(directory) as dir_fd:
        _remove_entry(dir_fd, name)


class Transaction:
    """Files and directories of one directory replaced together, or not at all.

        with Transaction(path) as txn:
            txn.write("a.nix", data)
            txn.remove("old.nix")
            txn.commit()

    write/write_dir stage temps (created with O_EXCL, synced); commit renames them in the order
    they were staged, then removes, then syncs the directory. Leaving the block without commit,
    or with an error, removes every temp. A link at a target name is refused when staging.
    """

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.dir = Path(directory)
        self._fd: int | None = None
        self._staged: list[tuple[str, str]] = []  # (temp name, final name)
        self._removals: list[str] = []
        self._done = False

    def __enter__(self) -> "Transaction":
        with open_dir(self.dir) as fd:
            self._fd = os.dup(fd)
        return self

    def __exit__(self, *exc_info) -> None:
        assert self._fd is not None
        try:
            if not self._done:
                for temp, _ in self._staged:
                    _remove_entry(self._fd, temp)
        finally:
            os.close(self._fd)
            self._fd = None

    def names(self) -> list[str]:
        """What the directory holds now."""
        assert self._fd is not None
        return os.listdir(self._fd)

    def _target(self, name: str) -> None:
        if "/" in name or name in ("", ".", ".."):
            raise ValueError(f"not a plain file name: {name!r}")
        assert self._fd is not None, "use Transaction as a context manager"
        if _is_link(name, self._fd):
            raise _symlink_error(self.dir / name)

    def _temp_name(self, name: str) -> str:
        return f".{name}.{secrets.token_hex(4)}{TEMP_SUFFIX}"

    def write(self, name: str, data: bytes, mode: int = FILE_MODE) -> Path:
        """Stage `data` for `name`; returns the temp's path (to check it before commit)."""
        self._target(name)
        temp = self._temp_name(name)
        self._staged.append((temp, name))
        _create(self._fd, temp, data, mode, self.dir / temp)
        return self.dir / temp

    def write_dir(self, name: str, files: Mapping[str, bytes]) -> None:
        """Stage a new private directory `name` (which must not exist yet) holding `files`, 0600."""
        self._target(name)
        temp = self._temp_name(name)
        os.mkdir(temp, PRIVATE_DIR_MODE, dir_fd=self._fd)
        self._staged.append((temp, name))
        sub = os.open(temp, _DIR_FLAGS, dir_fd=self._fd)
        try:
            os.fchmod(sub, PRIVATE_DIR_MODE)
            for file_name, data in files.items():
                _create(sub, file_name, data, PRIVATE_FILE_MODE, self.dir / temp / file_name)
            os.fsync(sub)
        finally:
            os.close(sub)

    def remove(self, name: str) -> None:
        self._target(name)
        self._removals.append(name)

    def commit(self) -> None:
        assert self._fd is not None
        # No new check of the targets here: a rename replaces a link planted meanwhile instead of
        # writing through it, and refusing halfway would leave part of the change applied.
        for temp, name in self._staged:
            os.rename(temp, name, src_dir_fd=self._fd, dst_dir_fd=self._fd)
        self._done = True
        for name in self._removals:
            _remove_entry(self._fd, name)
        os.fsync(self._fd)


def atomic_write(path: str | os.PathLike[str], data: bytes, mode: int = FILE_MODE) -> None:
    """Replace one file so that readers see either the old or the new content, never a mix."""
    path = Path(path)
    with Transaction(path.parent) as txn:
        txn.write(path.name, data, mode)
        txn.commit()
