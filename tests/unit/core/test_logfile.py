"""hyperconsole.log: repeats counted, rotated, 0600 in 0700, never written through a symlink."""

from __future__ import annotations

import logging
import stat

import pytest

from hyperconsole.cli.logfile import open_log
from hyperconsole.errors import HyperconsoleError


@pytest.fixture
def poll_log():
    """The logger the app's poll failures go to, with only the handler under test attached."""
    logger = logging.getLogger("hyperconsole.app")
    saved = logger.handlers[:], logger.propagate, logger.level
    logger.handlers, logger.propagate = [], False
    logger.setLevel(logging.INFO)
    yield logger
    logger.handlers, logger.propagate = saved[0], saved[1]
    logger.setLevel(saved[2])


def _lines(path) -> list[str]:
    return [line.split(": ", 1)[1] for line in path.read_text().splitlines()]


def test_an_outage_is_one_line_and_a_count(tmp_path, poll_log):
    path = tmp_path / "state" / "hyperconsole.log"
    handler = open_log(path)
    poll_log.addHandler(handler)
    for _ in range(38):  # one failed refresh after another
        poll_log.warning("domain poll failed: %s", "not connected to qemu:///system")
    poll_log.warning("domain poll failed: %s", "getAllDomainStats stuck")
    poll_log.warning("domain poll failed: %s", "getAllDomainStats stuck")
    handler.close()
    assert _lines(path) == [
        "domain poll failed: not connected to qemu:///system",
        "domain poll failed: not connected to qemu:///system (repeated 37 times)",
        "domain poll failed: getAllDomainStats stuck",
        "domain poll failed: getAllDomainStats stuck (repeated 1 time)",
    ]


def test_the_log_rotates_at_a_bounded_size(tmp_path, poll_log):
    from hyperconsole.cli.logfile import LogFile

    path = tmp_path / "hyperconsole.log"
    handler = LogFile(path, max_bytes=2000, backups=2)
    handler.setFormatter(logging.Formatter("%(message)s"))
    poll_log.addHandler(handler)
    for i in range(200):
        poll_log.warning("line %d of a long session", i)
    handler.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hyperconsole.log", "hyperconsole.log.1",
                                                          "hyperconsole.log.2"]
    assert all(p.stat().st_size <= 2000 for p in tmp_path.iterdir())
    assert path.read_text().splitlines()[-1] == "line 199 of a long session"


def test_log_is_private(tmp_path):
    path = tmp_path / "state" / "hyperconsole.log"
    (tmp_path / "state").mkdir(mode=0o755)
    open_log(path).close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


def test_a_link_planted_in_place_of_the_log_is_not_followed_after_rotation(tmp_path, poll_log):
    """Rotation renames and reopens the log by name: a link put there meanwhile is never written
    through (the symlinked log at start-up: tests/unit/nixos/test_nixos_symlinks.py)."""
    from hyperconsole.cli.logfile import LogFile

    target = tmp_path / "shadow"
    target.write_text("root:x:0:0\n")
    path = tmp_path / "state" / "hyperconsole.log"
    with pytest.raises(HyperconsoleError, match="symbolic link"):
        path.parent.mkdir()
        path.symlink_to(target)
        open_log(path)
    path.unlink()
    handler = LogFile(path, max_bytes=200, backups=1)
    poll_log.addHandler(handler)
    poll_log.warning("first line, long enough to fill most of the log before it rotates .......")
    path.rename(tmp_path / "moved")
    path.symlink_to(target)
    for i in range(5):
        poll_log.warning("line %d after the link was planted ...................................", i)
    handler.close()
    assert target.read_text() == "root:x:0:0\n"  # the link was rotated away as a link, never written through
    assert not path.is_symlink() and "after the link was planted" in path.read_text()
