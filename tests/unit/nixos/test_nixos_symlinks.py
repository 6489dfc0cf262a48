"""No symbolic link is followed as root: every file the console writes in `<nixos-dir>/hyperconsole`
and in the state dir, planted as a real link, is refused with one line naming it, and what the link
points to stays as it was (an outside file unchanged, a nonexistent path not created)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from hyperconsole import cli, paths

FRAGMENTS = "hyperconsole"
APPLY = ["profile", "apply", "headless", "--yes"]

# (where the link is planted, the command that writes there, is the link a directory)
CASES = {
    "fragments dir": (f"nixos/{FRAGMENTS}", APPLY + ["--no-rebuild"], True),
    "fragment": (f"nixos/{FRAGMENTS}/security-profile.nix", APPLY + ["--no-rebuild"], False),
    "default.nix": (f"nixos/{FRAGMENTS}/default.nix", APPLY + ["--no-rebuild"], False),
    "store lock": (f"nixos/{FRAGMENTS}/.lock", APPLY + ["--no-rebuild"], False),
    "history": (f"nixos/{FRAGMENTS}/.history", APPLY + ["--no-rebuild"], True),
    "rebuild lock": (f"nixos/{FRAGMENTS}/.rebuild.lock", ["rebuild", "switch"], False),
    "pending lock": (f"nixos/{FRAGMENTS}/.pending.lock", APPLY + ["--confirm-timeout", "60"], False),
    "pending record": (f"nixos/{FRAGMENTS}/.pending-change.json", APPLY + ["--confirm-timeout", "60"], False),
    "configuration.nix": ("nixos/configuration.nix", ["nixos", "status", "--add-import"], False),
    "rebuild logs": ("state/rebuilds", ["rebuild", "switch"], True),
}


@pytest.fixture
def layout(tmp_path, monkeypatch, recording_rebuild, script):
    nixos = tmp_path / "nixos"
    (nixos / FRAGMENTS).mkdir(parents=True)
    (nixos / "configuration.nix").write_text("{ config, pkgs, ... }:\n{\n  networking.hostName = \"hv1\";\n}\n")
    state = paths.state_dir()
    state.mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    rebuild, calls, _ = recording_rebuild
    revert = script("fake-revert", "echo reverted\n")
    common = ["--nixos-dir", str(nixos), "--rebuild-cmd", str(rebuild), "--revert-cmd", str(revert)]
    roots = {"nixos": nixos, "state": state}
    return roots, outside, common, calls


def _plant(roots, where: str, target: Path) -> Path:
    root, _, rest = where.partition("/")
    link = roots[root] / rest
    if link.is_dir() and not link.is_symlink():
        link.rmdir()
    link.unlink(missing_ok=True)
    link.symlink_to(target)
    return link


def _snapshot(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("target_kind", ["existing", "nonexistent"])
def test_a_planted_link_is_refused_and_its_target_untouched(layout, capsys, case, target_kind):
    roots, outside, common, calls = layout
    where, argv, is_dir = CASES[case]
    if target_kind == "existing":
        target = outside / "victim"
        if is_dir:
            target.mkdir()
            (target / "keep").write_text("precious\n")
        else:
            target.write_text("precious\n")
    else:
        target = outside / "missing"
    before = _snapshot(outside)
    link = _plant(roots, where, target)

    code = cli.main([*argv, *common])
    out, err = capsys.readouterr()

    assert code == 1, out + err
    assert err == f"error: {link} is a symbolic link; refusing to write through it (remove the link and check who created it)\n"
    assert _snapshot(outside) == before
    assert target.exists() == (target_kind == "existing")
    assert link.is_symlink()
    assert not calls.exists()  # nothing was rebuilt
    assert not (roots["nixos"] / FRAGMENTS / "security-profile.nix").is_file() or case == "fragment"


def test_a_linked_log_file_is_refused_and_the_command_still_runs(layout, capsys):
    roots, outside, common, _ = layout
    victim = outside / "victim"
    victim.write_text("precious\n")
    log = paths.state_dir() / "hyperconsole.log"
    log.symlink_to(victim)
    code = cli.main(["profile", "list", *common])
    out, err = capsys.readouterr()
    assert code == 0 and "headless" in out
    assert err == (f"hyperconsole: not logging to a file: {log} is a symbolic link; refusing to write through it "
                   "(remove the link and check who created it)\n")
    assert victim.read_text() == "precious\n"
    assert log.is_symlink()


def test_a_linked_state_dir_is_refused(layout, capsys):
    roots, outside, common, _ = layout
    state = paths.state_dir()
    os.rmdir(state)
    state.symlink_to(outside)
    code = cli.main(["profile", "list", *common])
    _, err = capsys.readouterr()
    assert code == 0 and f"{state} is a symbolic link; refusing" in err
    assert list(outside.iterdir()) == []
