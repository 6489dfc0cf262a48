"""A change of several files is all or nothing, also on a nearly full disk: the NixOS dir on a real
64 KiB tmpfs with 4-12 KiB left, `profile apply headless` through the CLI entry point."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from hyperconsole import cli
from tests.conftest import in_ci

FRAGMENTS = "hyperconsole"


@pytest.fixture
def small_disk(tmp_path):
    if os.geteuid() != 0:
        if in_ci():
            pytest.fail("the full-disk test mounts a tmpfs and must run as root in CI")
        pytest.skip("mounting a tmpfs needs root")
    mount = tmp_path / "small"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k,mode=0755", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


@pytest.fixture
def common(recording_rebuild, script):
    rebuild, calls, _ = recording_rebuild
    revert = script("fake-revert", "echo reverted\n")
    return ["--rebuild-cmd", str(rebuild), "--revert-cmd", str(revert)], calls


def _free(path: Path) -> int:
    info = os.statvfs(path)
    return info.f_bavail * info.f_frsize


def _fill(path: Path, leave: int) -> None:
    with open(path / "filler", "wb") as handle:
        handle.write(b"\0" * max(0, _free(path) - leave))
    assert _free(path) <= leave


def _state(nixos: Path) -> dict[str, bytes]:
    """Every file under the fragments dir but the lock files (a failed run may create those, empty)."""
    base = nixos / FRAGMENTS
    return {
        str(p.relative_to(base)): p.read_bytes()
        for p in sorted(base.rglob("*"))
        if p.is_file() and not p.name.endswith(".lock")
    }


@pytest.mark.parametrize("before", ["fresh", "management applied"])
def test_apply_on_a_nearly_full_disk_changes_nothing(small_disk, common, capsys, before):
    argv, calls = common
    nixos = small_disk
    (nixos / "configuration.nix").write_text("{ ... }:\n{\n  imports = [ ./hyperconsole ];\n}\n")
    if before == "management applied":
        assert cli.main(["profile", "apply", "management", "--yes", "--no-rebuild", "--nixos-dir", str(nixos), *argv]) == 0
        assert (nixos / FRAGMENTS / ".history" / "000001").is_dir()
    capsys.readouterr()
    for kib in range(4, 13):
        (nixos / "filler").unlink(missing_ok=True)
        _fill(nixos, kib * 1024)
        expected = _state(nixos)

        code = cli.main(["profile", "apply", "headless", "--yes", "--confirm-timeout", "30",
                         "--nixos-dir", str(nixos), *argv])
        out, err = capsys.readouterr()

        assert code == 1, f"{kib} KiB free: {out}{err}"
        assert err.count("\n") == 1 and "No space left on device" in err, f"{kib} KiB free: {err}"
        assert _state(nixos) == expected, f"{kib} KiB free"
        assert not calls.exists()
        assert not (nixos / FRAGMENTS / ".pending-change.json").exists()
        assert not list((nixos / FRAGMENTS).glob(".history/.*"))
        assert not list((nixos / FRAGMENTS).glob(".*.tmp"))

    # With room again, the same command goes through: the failed runs left nothing in its way.
    (nixos / "filler").unlink()
    code = cli.main(["profile", "apply", "headless", "--yes", "--no-rebuild", "--nixos-dir", str(nixos), *argv])
    assert code == 0, capsys.readouterr()
    assert "./security-profile.nix" in (nixos / FRAGMENTS / "default.nix").read_text()
