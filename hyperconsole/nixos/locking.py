"""Exclusive locks across processes (flock on a lock file), waited for with a deadline."""

from __future__ import annotations

import errno
import fcntl
import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from hyperconsole import safefs


@contextmanager
def held(path: Path, wait: float, busy: Callable[[str], Exception], *, note: str | None = None,
         poll: float = 0.05) -> Iterator[int]:
    """Hold an exclusive flock on `path`, waiting up to `wait` seconds. When it stays taken,
    raise `busy(what the holder wrote into the file)`. `note` is written for the next waiter
    to read. Closing the descriptor on exit drops the lock (also if the process dies).
    A symbolic link at `path` is refused (root would otherwise write the note where it points)."""
    fd = safefs.open_file(path, os.O_RDWR | os.O_CREAT)
    try:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                    raise
                if time.monotonic() >= deadline:
                    holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "unknown"
                    raise busy(holder) from None
                time.sleep(poll)
        if note is not None:
            try:
                os.ftruncate(fd, 0)
                os.pwrite(fd, note.encode(), 0)
            except OSError:
                pass  # the note only helps a waiter name the holder; a full disk must not stop the lock
        yield fd
    finally:
        os.close(fd)
