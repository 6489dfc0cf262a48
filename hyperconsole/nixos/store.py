"""FragmentStore: the `<nixos-dir>/hyperconsole/*.nix` files hyperconsole owns.

Guarantees, because the operator's only way back in may depend on these files:
- a change is all or nothing, also on a full disk: every new file (fragments, records such as the
  pending change, default.nix, the history copy) is written and synced as a temp first, and only
  then renamed into place, default.nix last (safefs.Transaction);
- no symbolic link is followed, in the fragments dir or its history (safefs);
- one writer at a time across processes (fcntl.flock on `.lock`), waiting a bounded time;
- no lost update: a change carries the content hash of each file as it was read, and is refused
  if any file changed since;
- every change is recorded: a git commit when the NixOS dir is a git work tree, otherwise numbered
  copies under `.history/` (the newest HISTORY_LIMIT kept; 0600 files in a 0700 dir, since a
  fragment may hold what only root should read).
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import re
import shutil
import subprocess
import time
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping

from hyperconsole import proc, safefs
from hyperconsole.errors import HyperconsoleError, ValidationError
from hyperconsole.nixos import locking
from hyperconsole.nixos.render import parse, read_meta, render_fragment, render_key, render_value

FRAGMENTS_SUBDIR = "hyperconsole"
INDEX_NAME = "default"
HISTORY_LIMIT = 50
GIT_TIMEOUT = 30.0  # a git that hangs (a stale index.lock on NFS, a hook) must not hold the rebuild lock
ABSENT = "absent"  # content hash of a file that does not exist
# default.nix puts the hash of every fragment it imports into the system it builds, as this file under
# the system's etc: what the running system was built from, compared with the fragments on disk
# (doctor's drift check).
APPLIED_ETC = "hyperconsole/applied-fragments.json"

_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,62}\Z")


class LockBusyError(HyperconsoleError):
    """Another process holds the fragment lock for longer than we are willing to wait."""


class ConflictError(HyperconsoleError):
    """A fragment changed on disk after it was read (lost-update protection)."""


def check_fragment_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name) or name == INDEX_NAME:
        shown = repr(name)[:60]
        raise ValidationError(
            f"invalid fragment name {shown}",
            hint="use 1-63 lower-case letters, digits and '-', starting with a letter or digit, not 'default'",
        )
    return name


def content_hash(data: bytes | None) -> str:
    return ABSENT if data is None else "sha256:" + hashlib.sha256(data).hexdigest()


def applied_record(texts: Mapping[str, str]) -> str:
    """The JSON default.nix writes into the system: {fragment name: content hash}."""
    return json.dumps({name: content_hash(text.encode("utf-8")) for name, text in sorted(texts.items())},
                      sort_keys=True)


@dataclass(frozen=True)
class Fragment:
    """One fragment file as read: its text (None when absent) and the hash of that text."""

    name: str
    path: Path
    text: str | None
    content_hash: str

    @property
    def exists(self) -> bool:
        return self.text is not None

    def value(self) -> Any:
        """The attrset the file holds (parsed with our reader); None when the file is absent."""
        return None if self.text is None else parse(self.text)

    def meta(self) -> dict[str, str]:
        return {} if self.text is None else read_meta(self.text)


@dataclass(frozen=True)
class FragmentChange:
    name: str
    old_text: str | None
    new_text: str | None  # None deletes the fragment
    base_hash: str

    @property
    def changed(self) -> bool:
        return self.old_text != self.new_text


@dataclass(frozen=True)
class ChangeSet:
    """A pending change to one or more fragments, prepared (and diffable) before it is written."""

    changes: tuple[FragmentChange, ...]
    message: str

    @property
    def is_empty(self) -> bool:
        return not any(c.changed for c in self.changes)

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.changes if c.changed]

    def previous_texts(self) -> dict[str, str | None]:
        """What to restore to undo this change."""
        return {c.name: c.old_text for c in self.changes if c.changed}

    def diff(self) -> str:
        """Unified diff of every changed fragment, paths relative to the NixOS dir."""
        parts: list[str] = []
        for change in self.changes:
            if not change.changed:
                continue
            rel = f"{FRAGMENTS_SUBDIR}/{change.name}.nix"
            old = (change.old_text or "").splitlines(keepends=True)
            new = (change.new_text or "").splitlines(keepends=True)
            parts.extend(
                difflib.unified_diff(
                    old,
                    new,
                    fromfile="/dev/null" if change.old_text is None else f"a/{rel}",
                    tofile="/dev/null" if change.new_text is None else f"b/{rel}",
                )
            )
        text = "".join(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n" for line in parts)
        return text


@dataclass(frozen=True)
class HistoryEntry:
    ident: str  # git commit hash or history folder number
    timestamp: float
    message: str


@dataclass(frozen=True)
class CommitResult:
    written: list[str]
    history: str  # "git <hash>", ".history/000012" or a warning why history was not recorded
    warnings: list[str] = field(default_factory=list)


class FragmentStore:
    """The fragments directory of one NixOS configuration directory."""

    def __init__(self, nixos_dir: str | os.PathLike[str], *, lock_timeout: float = 10.0, history_limit: int = HISTORY_LIMIT) -> None:
        self.nixos_dir = Path(nixos_dir)
        self.dir = self.nixos_dir / FRAGMENTS_SUBDIR
        self.lock_timeout = lock_timeout
        self.history_limit = history_limit

    # -- reading ------------------------------------------------------------------------------

    def path(self, name: str) -> Path:
        return self.dir / f"{check_fragment_name(name)}.nix"

    def names(self) -> list[str]:
        try:
            with safefs.open_dir(self.dir) as fd:
                entries = os.listdir(fd)
        except (FileNotFoundError, NotADirectoryError):
            return []
        stems = (e[: -len(".nix")] for e in entries if e.endswith(".nix"))
        return sorted(stem for stem in stems if stem != INDEX_NAME and _NAME.match(stem))

    def read(self, name: str) -> Fragment:
        path = self.path(name)
        try:
            data = safefs.read_bytes(path)
        except OSError as exc:
            raise HyperconsoleError(f"cannot read {path}: {exc.strerror or exc}") from exc
        if data is None:
            return Fragment(name, path, None, ABSENT)
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise HyperconsoleError(f"{path} is not UTF-8 text") from exc
        return Fragment(name, path, text, content_hash(data))

    # -- preparing ----------------------------------------------------------------------------

    def prepare(
        self,
        updates: Mapping[str, Mapping[str, Any] | None],
        *,
        message: str,
        meta: Mapping[str, Mapping[str, str]] | None = None,
    ) -> ChangeSet:
        """Render new values (None deletes) against what is on disk now; nothing is written.

        Rendering errors (bad names, unrepresentable values) are raised here, before any write.
        """
        changes = []
        for name in sorted(updates):
            current = self.read(name)
            value = updates[name]
            new_text = None if value is None else render_fragment(value, meta=(meta or {}).get(name))
            changes.append(FragmentChange(name, current.text, new_text, current.content_hash))
        return ChangeSet(tuple(changes), message)

    def prepare_texts(self, texts: Mapping[str, str | None], *, message: str) -> ChangeSet:
        """A change back to exact earlier texts (used to restore fragments on revert)."""
        changes = []
        for name in sorted(texts):
            current = self.read(name)
            changes.append(FragmentChange(name, current.text, texts[name], current.content_hash))
        return ChangeSet(tuple(changes), message)

    # -- locking ------------------------------------------------------------------------------

    def ensure_dir(self) -> None:
        """The fragments dir exists (created in an existing NixOS dir), is no link, is writable."""
        if not self.nixos_dir.is_dir():
            raise HyperconsoleError(f"NixOS directory {self.nixos_dir} does not exist", hint="use --nixos-dir")
        try:
            safefs.ensure_dir(self.dir)
        except PermissionError as exc:
            raise HyperconsoleError(f"cannot create {self.dir}: permission denied", hint="run as root or a member of the group owning it") from exc
        if not os.access(self.dir, os.W_OK | os.X_OK):
            raise HyperconsoleError(f"{self.dir} is not writable", hint="run as root or a member of the group owning it")

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Exclusive lock across processes; waits up to lock_timeout seconds, then fails clearly."""
        self.ensure_dir()
        busy = lambda holder: LockBusyError(  # noqa: E731
            f"another hyperconsole process (pid {holder}) is changing {self.dir}",
            hint="wait for it to finish and try again")
        with locking.held(self.dir / ".lock", self.lock_timeout, busy, note=f"{os.getpid()}\n"):
            self._remove_stale_temp_files()
            yield

    def _remove_stale_temp_files(self) -> None:
        # Only called with the lock held, so any temp left here belongs to a dead writer.
        safefs.remove_temps(self.dir)
        if self.history_dir.is_dir() and not self.history_dir.is_symlink():
            safefs.remove_temps(self.history_dir)

    # -- writing ------------------------------------------------------------------------------

    def commit(self, changeset: ChangeSet, *, check_hashes: bool = True,
               records: Mapping[str, bytes] | None = None) -> CommitResult:
        """Write a prepared change under the lock, all or nothing: the fragments, default.nix, the
        history copy and `records` (dot files of this dir, such as the pending change, that must
        exist exactly when the change does).

        With check_hashes (the default) the change is refused with ConflictError if any file
        differs from when it was prepared; revert passes False because restoring must win.
        """
        with self.lock():
            if check_hashes:
                for change in changeset.changes:
                    now = self.read(change.name).content_hash
                    if now != change.base_hash:
                        raise ConflictError(
                            f"{FRAGMENTS_SUBDIR}/{change.name}.nix changed since it was read; nothing was written",
                            hint="review the new content and apply again",
                        )
            changed = [c for c in changeset.changes if c.changed]
            if not changed and not records:
                return CommitResult([], "no change")
            warnings: list[str] = []
            git = self.is_git_repo()
            try:
                history = self._write_all(changeset.message, changed, dict(records or {}), git=git)
            except PermissionError as exc:
                raise HyperconsoleError(f"cannot write in {self.dir}: permission denied; nothing was changed") from exc
            except OSError as exc:
                raise HyperconsoleError(f"cannot write in {self.dir}: {exc.strerror or exc}; nothing was changed") from exc
            if not changed:
                return CommitResult([], "no change")
            if git:
                history = self._git_commit(changeset.message, warnings)
            return CommitResult([c.name for c in changed], history, warnings)

    def _write_all(self, message: str, changed: list[FragmentChange], records: dict[str, bytes], *, git: bool) -> str:
        """Stage every file, then rename them all (default.nix last, the history copy after it)."""
        after = {name: self.read(name).text for name in self.names()}
        after.update({c.name: c.new_text for c in changed})
        texts = {name: text for name, text in sorted(after.items()) if text is not None}
        index = self.index_text(texts)
        with ExitStack() as stack:
            history_txn, history = None, "no change"
            if changed and not git:
                history_txn, history = self._stage_history(stack, message, texts, index)
            txn = stack.enter_context(safefs.Transaction(self.dir))
            for change in changed:
                if change.new_text is not None:
                    txn.write(f"{change.name}.nix", change.new_text.encode("utf-8"))
            for name, data in records.items():
                txn.write(name, data)
            if safefs.read_bytes(self.dir / f"{INDEX_NAME}.nix") != index.encode("utf-8"):
                txn.write(f"{INDEX_NAME}.nix", index.encode("utf-8"))
            for change in changed:
                if change.new_text is None:
                    txn.remove(f"{change.name}.nix")
            txn.commit()
            if history_txn is not None:
                history_txn.commit()
        return history

    def ensure_index(self) -> None:
        """The fragments dir and its default.nix exist (an empty but valid one when new), so a
        configuration importing ./hyperconsole evaluates before any fragment is written."""
        with self.lock():
            if safefs.read_bytes(self.dir / f"{INDEX_NAME}.nix") is None:
                safefs.atomic_write(self.dir / f"{INDEX_NAME}.nix", self.index_text().encode("utf-8"))

    def index_text(self, texts: Mapping[str, str] | None = None) -> str:
        """default.nix importing the fragments `texts` ({name: text}; by default those on disk now)
        and recording their hashes in the system it builds (APPLIED_ETC)."""
        if texts is None:
            texts = {name: text for name in self.names() if (text := self.read(name).text) is not None}
        names = sorted(texts)
        lines = [
            "# Generated by hyperconsole: imports every fragment in this directory.",
            "# Import this directory once from configuration.nix (imports = [ ./hyperconsole ];).",
            "{",
        ]
        if names:
            lines.append("  imports = [")
            lines.extend(f"    ./{name}.nix" for name in names)
            lines.append("  ];")
        else:
            lines.append("  imports = [ ];")
        record = applied_record(texts)
        lines.append(f"  environment.etc.{render_key(APPLIED_ETC)}.text = {render_value(record)};")
        lines.append("}")
        return "\n".join(lines) + "\n"

    # -- history ------------------------------------------------------------------------------

    def is_git_repo(self) -> bool:
        if shutil.which("git") is None:
            return False
        try:
            probe = proc.run(["git", "-C", str(self.nixos_dir), "rev-parse", "--is-inside-work-tree"], GIT_TIMEOUT)
        except subprocess.TimeoutExpired:
            return False  # history then goes to .history, which needs no git
        return probe.returncode == 0 and probe.stdout.strip() == b"true"

    def _git_commit(self, message: str, warnings: list[str]) -> str:
        # A fixed identity so commits work on hosts where root has no git identity configured.
        git = ["git", "-C", str(self.nixos_dir), "-c", "user.name=hyperconsole", "-c", "user.email=hyperconsole@localhost"]
        # Only the fragments: not the lock files, nor the pending record of a trial.
        fragments = f":(glob){FRAGMENTS_SUBDIR}/*.nix"
        steps = [git + ["add", "-A", "--", fragments], git + ["commit", "-q", "-m", message, "--", fragments]]
        try:
            for argv in steps:
                done = proc.run(argv, GIT_TIMEOUT)
                if done.returncode != 0:
                    detail = proc.text(done.stderr or done.stdout).strip().splitlines()
                    warnings.append("git history not recorded: " + (detail[-1] if detail else f"exit {done.returncode}"))
                    return "not recorded"
            head = proc.run(git + ["rev-parse", "--short", "HEAD"], GIT_TIMEOUT)
        except subprocess.TimeoutExpired as exc:
            warnings.append(f"git history not recorded: git did not finish in {GIT_TIMEOUT:.0f} s")
            return "not recorded"
        return f"git {proc.text(head.stdout).strip()}"

    @property
    def history_dir(self) -> Path:
        return self.dir / ".history"

    def _stage_history(self, stack: ExitStack, message: str, texts: dict[str, str], index: str):
        """Stage the numbered copy of the fragments as they will be, and the pruning of old ones."""
        safefs.ensure_private_dir(self.history_dir)
        txn = stack.enter_context(safefs.Transaction(self.history_dir))
        numbers = sorted(int(name) for name in txn.names() if name.isdigit())
        number = max(numbers, default=0) + 1
        files = {f"{name}.nix": text.encode("utf-8") for name, text in texts.items()}
        files[f"{INDEX_NAME}.nix"] = index.encode("utf-8")
        files["MESSAGE"] = f"{time.time():.3f}\n{message}\n".encode("utf-8")
        txn.write_dir(f"{number:06d}", files)
        for old in (numbers + [number])[: -self.history_limit]:
            txn.remove(f"{old:06d}")
        return txn, f".history/{number:06d}"

    def history(self) -> list[HistoryEntry]:
        """Newest first."""
        if self.is_git_repo():
            try:
                done = proc.run(["git", "-C", str(self.nixos_dir), "log", "--format=%h%x09%ct%x09%s", "--",
                                 FRAGMENTS_SUBDIR], GIT_TIMEOUT)
            except subprocess.TimeoutExpired:
                raise HyperconsoleError(f"git log did not finish in {GIT_TIMEOUT:.0f} s") from None
            entries = []
            for line in proc.text(done.stdout).splitlines():
                ident, stamp, subject = (line.split("\t", 2) + ["", ""])[:3]
                entries.append(HistoryEntry(ident, float(stamp or 0), subject))
            return entries
        try:
            with safefs.open_dir(self.history_dir) as fd:
                numbers = sorted((name for name in os.listdir(fd) if name.isdigit()), reverse=True)
        except (FileNotFoundError, NotADirectoryError):
            return []
        entries = []
        for number in numbers:
            try:
                data = safefs.read_bytes(self.history_dir / number / "MESSAGE") or b""
                stamp, _, message = data.decode("utf-8").partition("\n")
                entries.append(HistoryEntry(number, float(stamp), message.strip()))
            except (OSError, ValueError, HyperconsoleError):
                entries.append(HistoryEntry(number, 0.0, "(no message)"))
        return entries
