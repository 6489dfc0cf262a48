"""hyperconsole.log: rotated at a bounded size, a repeated line written once with a count, opened
through safefs (no symlink followed, 0600 in a 0700 directory: the console may run as root)."""

from __future__ import annotations

import logging
import logging.handlers
import time
from pathlib import Path

from hyperconsole import safefs
from hyperconsole.errors import HyperconsoleError

MAX_BYTES = 1 << 20
BACKUPS = 3
# While one line repeats, its count is still written this often (a long outage shows it grow).
COUNT_EVERY = 600.0
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class LogFile(logging.handlers.RotatingFileHandler):
    """A rotating log that writes a run of identical lines as the first one plus
    "… (repeated N times)" when the run ends, at close, or every COUNT_EVERY seconds."""

    def __init__(self, path: Path, *, max_bytes: int = MAX_BYTES, backups: int = BACKUPS, clock=time.monotonic) -> None:
        self._clock = clock
        self._last: logging.LogRecord | None = None
        self._last_key: tuple | None = None
        self._repeats = 0
        self._counted_at = 0.0
        super().__init__(path, maxBytes=max_bytes, backupCount=backups, encoding="utf-8")

    def _open(self):
        # After every rotation too: a link planted in place of the log is refused, not followed.
        return safefs.open_private_text(self.baseFilename)

    def handleError(self, record: logging.LogRecord) -> None:
        """A line that cannot be written is dropped: a traceback on stderr would land in the TUI."""

    def emit(self, record: logging.LogRecord) -> None:
        key = (record.levelno, record.name, record.getMessage())
        now = self._clock()
        if key == self._last_key:
            self._repeats += 1
            if now - self._counted_at >= COUNT_EVERY:
                self._write_count(now)
            return
        self._write_count(now)
        self._last, self._last_key = record, key
        super().emit(record)

    def _write_count(self, now: float) -> None:
        self._counted_at = now
        if not self._repeats or self._last is None:
            return
        last = self._last
        summary = logging.LogRecord(last.name, last.levelno, last.pathname, last.lineno,
                                    "%s (repeated %d time%s)",
                                    (last.getMessage(), self._repeats, "" if self._repeats == 1 else "s"), None)
        self._repeats = 0
        super().emit(summary)

    def close(self) -> None:
        self.acquire()
        try:
            if self.stream is not None:
                self._write_count(self._clock())
        finally:
            self.release()
        super().close()


def open_log(path: Path) -> LogFile:
    """The console's log at `path`; HyperconsoleError (one line) when it cannot be opened safely."""
    try:
        safefs.ensure_private_dir(path.parent)
        handler = LogFile(path)
    except OSError as exc:
        raise HyperconsoleError(f"cannot open {path}: {exc.strerror or exc}") from None
    handler.setFormatter(logging.Formatter(FORMAT))
    return handler
