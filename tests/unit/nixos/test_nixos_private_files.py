"""Rebuild logs, the log file and history copies may hold secrets: 0600 files in 0700 dirs, created
so, and tightened when an older version (or an operator) left them looser."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from hyperconsole import cli, paths
from hyperconsole.nixos.rebuild import RebuildRunner
from hyperconsole.nixos.revert import ConfirmOrRevert
from hyperconsole.nixos.store import FragmentStore


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


@pytest.fixture
def common(nixos_dir, recording_rebuild, script):
    rebuild, _, _ = recording_rebuild
    revert = script("fake-revert", "echo reverted\n")
    return ["--nixos-dir", str(nixos_dir), "--rebuild-cmd", str(rebuild), "--revert-cmd", str(revert)]


@pytest.fixture(params=["new", "found looser"])
def loose(request):
    """Under umask 0 (the loosest a caller can have); with 'found looser' the dirs and files exist
    already, world-readable."""
    old = os.umask(0)
    yield request.param == "found looser"
    os.umask(old)


def _preexisting(directory: Path, file_name: str | None = None) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o755)
    if file_name:
        (directory / file_name).write_text("old\n")
        (directory / file_name).chmod(0o644)


def test_history_copies_are_private(common, nixos_dir, capsys, loose):
    history = nixos_dir / "hyperconsole" / ".history"
    if loose:
        _preexisting(history)
    assert cli.main(["profile", "apply", "management", "--yes", "--no-rebuild", *common]) == 0, capsys.readouterr()
    assert mode(history) == 0o700
    copies = [p for p in history.rglob("*")]
    assert {p.name for p in copies} >= {"000001", "security-profile.nix", "default.nix", "MESSAGE"}
    for path in copies:
        assert mode(path) == (0o700 if path.is_dir() else 0o600), path
    # The fragments themselves stay readable by nix (never secrets: a profile with one is refused).
    assert mode(nixos_dir / "hyperconsole" / "security-profile.nix") == 0o644


def test_rebuild_logs_are_private(common, capsys, loose):
    logs = paths.state_dir() / "rebuilds"
    if loose:
        _preexisting(paths.state_dir())
        _preexisting(logs)
    assert cli.main(["rebuild", "switch", *common]) == 0, capsys.readouterr()
    assert mode(logs) == 0o700
    written = sorted(logs.iterdir())
    assert {p.suffix for p in written} == {".log", ".json"}
    assert all(mode(p) == 0o600 for p in written)


def test_log_file_is_private(common, capsys, loose):
    state = paths.state_dir()
    if loose:
        _preexisting(state, "hyperconsole.log")
    assert cli.main(["profile", "list", *common]) == 0
    capsys.readouterr()
    assert mode(state) == 0o700
    assert mode(state / "hyperconsole.log") == 0o600


def test_revert_timer_log_is_private(nixos_dir, tmp_path, recording_rebuild, script, loose):
    rebuild, _, _ = recording_rebuild
    state = tmp_path / "state"
    if loose:
        _preexisting(state / "rebuilds")
    store = FragmentStore(nixos_dir)
    runner = RebuildRunner(nixos_dir, str(rebuild), state_dir=state, use_systemd=False)
    controller = ConfirmOrRevert(store, runner, str(script("fake-revert", "echo reverted\n")), state_dir=state,
                                 use_systemd=False)
    outcome = controller.apply(store.prepare({"fw": {"networking": {"firewall": {"enable": True}}}}, message="m"),
                               timeout=60, description="firewall")
    assert outcome.pending is not None
    assert controller.confirm().ok  # stops the timer
    timer_logs = list((state / "rebuilds").glob("revert-timer-*.log"))
    assert len(timer_logs) == 1
    assert mode(state / "rebuilds") == 0o700 and mode(timer_logs[0]) == 0o600
