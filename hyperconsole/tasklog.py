"""The task log: every operator job and host change with when it started and ended, what it acted
on, how it ended and the full error (a toast is gone after a few seconds; this is the record).

Plain data, no Textual and no core types: the app feeds a `TaskLog` from the jobs it starts and the
outcomes they report, and a `TaskFile` keeps the newest entries in the state dir so a later session
sees what happened. `TaskFile` does blocking I/O: call it from a worker, never the UI thread.
"""

from __future__ import annotations

import enum
import json
import logging
import os
import threading
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Iterable

from hyperconsole import safefs
from hyperconsole.errors import HyperconsoleError

log = logging.getLogger(__name__)

LIMIT = 200  # entries kept in memory and on disk
FILE_NAME = "tasks.json"
FORMAT = 1


class Result(str, enum.Enum):
    RUNNING = "running"
    OK = "ok"
    FAILED = "failed"
    UNKNOWN = "unknown"  # still running when the session that started it ended


@dataclass(frozen=True)
class Task:
    id: str
    label: str  # what was done, as the operator would say it: "force off web-01"
    target: str  # which objects: VM names, pool, network, fragment files
    started: float  # wall-clock seconds
    ended: float | None = None
    result: Result = Result.RUNNING
    detail: str = ""  # what an ok outcome said
    error: str = ""  # the full error text of a failed one

    @property
    def finished(self) -> bool:
        return self.result is not Result.RUNNING

    def to_dict(self) -> dict:
        return {**asdict(self), "result": self.result.value}

    @classmethod
    def from_dict(cls, data: dict) -> "Task":
        ended = data.get("ended")
        return cls(id=str(data["id"]), label=str(data["label"]), target=str(data.get("target", "")),
                   started=float(data["started"]), ended=None if ended is None else float(ended),
                   result=Result(data["result"]), detail=str(data.get("detail", "")),
                   error=str(data.get("error", "")))


class TaskLog:
    """The entries of this session and, once loaded, of earlier ones; oldest first."""

    def __init__(self, limit: int = LIMIT) -> None:
        self.limit = limit
        self._tasks: dict[str, Task] = {}
        self.version = 0  # bumped on every change; lets a writer skip a stale snapshot

    @property
    def tasks(self) -> tuple[Task, ...]:
        return tuple(self._tasks.values())

    def get(self, task_id: str) -> Task | None:
        return self._tasks.get(task_id)

    def begin(self, label: str, target: str = "", *, task_id: str | None = None,
              now: float | None = None) -> Task:
        task = Task(task_id or os.urandom(6).hex(), label, target, time.time() if now is None else now)
        return self._put(task)

    def finish(self, task_id: str | None, label: str, *, error: str | None = None, detail: str = "",
               now: float | None = None) -> Task:
        """End a begun task; an outcome whose start this log never saw is entered as it arrives."""
        now = time.time() if now is None else now
        task = self._tasks.get(task_id or "") or Task(task_id or os.urandom(6).hex(), label, "", now)
        return self._put(replace(task, ended=now, result=Result.FAILED if error else Result.OK,
                                 detail=detail, error=error or ""))

    def add(self, task: Task) -> bool:
        """Enter a finished record with its own id (an automatic revert); False if already there."""
        if task.id in self._tasks:
            return False
        self._put(task)
        return True

    def add_earlier(self, tasks: Iterable[Task]) -> None:
        """Entries read back from an earlier session go before this session's. One still running
        then never reported its end: its session ended first."""
        earlier = {}
        for task in tasks:
            if task.id in self._tasks:
                continue
            if not task.finished:
                task = replace(task, result=Result.UNKNOWN,
                               error="the session that started this ended before it finished")
            earlier[task.id] = task
        self._tasks = {**earlier, **self._tasks}
        self._trim()
        self.version += 1

    def _put(self, task: Task) -> Task:
        self._tasks[task.id] = task
        self._trim()
        self.version += 1
        return task

    def _trim(self) -> None:
        while len(self._tasks) > self.limit:
            oldest = next((key for key, task in self._tasks.items() if task.finished), None)
            if oldest is None:
                return
            del self._tasks[oldest]


def fragment_names(names: Iterable[str]) -> str:
    """A host change's target: the fragment files it writes."""
    return ", ".join(f"{name}.nix" for name in sorted(names))


def revert_task_id(change_id: str) -> str:
    """One entry per reverted host change, whoever reverted it: the operator's `u` and the revert
    the app notices afterwards (or a later session finds) are the same entry."""
    return f"revert-{change_id}"


def revert_task(summary: object) -> Task | None:
    """The entry for a revert from the summary the confirm-or-revert record leaves behind
    (change_id, description, reason, reverted_at, restored, status, warning, log); None when
    there is none or it cannot be read."""
    if not isinstance(summary, dict):
        return None
    try:
        at = float(summary["reverted_at"])
        change_id = str(summary["change_id"])
        restored = fragment_names(str(name).removesuffix(".nix") for name in summary.get("restored") or ())
    except (KeyError, TypeError, ValueError) as exc:
        log.warning("last revert record not read: %s", exc)
        return None
    status = str(summary.get("status", ""))
    # "files restored (nothing was activated)": the trial never started, so nothing needed it.
    reverted = status in ("succeeded", "files restored (nothing was activated)")
    error = "" if reverted else (f"revert {status}: the previous system may not be active"
                                 + (f"; log {summary['log']}" if summary.get("log") else ""))
    detail = "\n".join(filter(None, [str(summary.get("reason", "")), str(summary.get("warning") or "")]))
    return Task(revert_task_id(change_id), f"revert {summary.get('description', '')}", restored, at, at,
                Result.OK if reverted else Result.FAILED, detail=detail, error=error)


class TaskFile:
    """`<state dir>/tasks.json`, private (0600 in a 0700 dir), replaced atomically through safefs
    (no symlink followed: a link there is refused); a snapshot older than one already written is
    skipped, so saves finishing out of order never go back in time."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._written = -1

    def load(self) -> list[Task]:
        try:
            data = safefs.read_bytes(self.path)
            if data is None:
                return []
            return [Task.from_dict(entry) for entry in json.loads(data.decode("utf-8"))["tasks"]]
        except (OSError, HyperconsoleError, ValueError, KeyError, TypeError) as exc:
            # A damaged or planted file costs the history, never the session.
            log.warning("task log %s not read: %s", self.path, exc)
            return []

    def save(self, version: int, tasks: Iterable[Task]) -> None:
        """Raises OSError or HyperconsoleError (a link where the file or its directory should be)."""
        with self._lock:
            if version <= self._written:
                return
            payload = json.dumps({"format": FORMAT, "tasks": [t.to_dict() for t in tasks]}, indent=1) + "\n"
            safefs.ensure_private_dir(self.path.parent)
            safefs.atomic_write(self.path, payload.encode("utf-8"), mode=safefs.PRIVATE_FILE_MODE)
            self._written = version
