"""Applying the wizard's plan on a scratch NixOS dir shaped like a fresh install, with stand-in
rebuild commands: a failing dry-build activates nothing and leaves every file as it was; a trial
nobody confirms is reverted by the trial machinery; a confirmed one stays."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from hyperconsole.nixos.rebuild import RebuildRunner
from hyperconsole.nixos.revert import ConfirmOrRevert
from hyperconsole.nixos.store import FragmentStore
from hyperconsole.setup import fragments, run, secrets
from tests.unit.backup.conftest import restic_bin  # noqa: F401
from tests.unit.setup.conftest import facts, good_answers


@pytest.fixture
def rig(nixos_dir, tmp_path, recording_rebuild, script):
    rebuild, calls, failing = recording_rebuild
    reverts = tmp_path / "reverts.log"
    revert_cmd = script("fake-revert", f"echo revert >> {reverts}\n")
    store = FragmentStore(nixos_dir)
    runner = RebuildRunner(nixos_dir, str(rebuild), state_dir=tmp_path / "state", use_systemd=False)
    controller = ConfirmOrRevert(store, runner, str(revert_cmd), state_dir=tmp_path / "state", use_systemd=False,
                                 current_system=tmp_path / "current-system", system_profile=tmp_path / "profiles" / "system")
    return store, controller, calls, failing, reverts


def _lines(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


def _plan(store, tmp_path, public_key):
    answers = good_answers(public_key)
    answers.identity.admin.password_hash = secrets.sha512_crypt("correct horse battery", "salt")
    return fragments.plan(answers, facts(), store, tmp_path / "secrets")


def _snapshot(nixos_dir: Path) -> dict[str, bytes]:
    return {str(p.relative_to(nixos_dir)): p.read_bytes() for p in sorted(nixos_dir.rglob("*"))
            if p.is_file() and ".history" not in p.parts and not p.name.startswith(".")}


def test_failed_dry_build_activates_nothing_and_restores_every_file(rig, nixos_dir, tmp_path, public_key):
    store, controller, calls, failing, reverts = rig
    failing.write_text("dry-build\n")
    before = (nixos_dir / "configuration.nix").read_bytes()
    plan = _plan(store, tmp_path, public_key)
    with pytest.raises(run.DryBuildFailed, match="nothing was activated and the fragment files are as before"):
        run.apply(plan, controller, timeout=30)
    assert _lines(calls) == ["dry-build"] and _lines(reverts) == []
    assert (nixos_dir / "configuration.nix").read_bytes() == before  # the import was taken out again
    assert store.names() == []
    assert controller.pending() is None


def test_unconfirmed_trial_is_reverted_by_itself(rig, nixos_dir, tmp_path, public_key, wait_for):
    store, controller, calls, _, reverts = rig
    plan = _plan(store, tmp_path, public_key)
    assert plan.trial_required
    outcome = run.apply(plan, controller, timeout=1)
    assert outcome.dry_build.ok and outcome.import_added
    assert "./hyperconsole" in (nixos_dir / "configuration.nix").read_text()
    assert outcome.apply.pending is not None
    assert sorted(store.names()) == ["identity", "network", "security-profile", "storage", "virtualisation"]
    hashed = tmp_path / "secrets" / "alice.hashedPassword"
    assert stat.S_IMODE(hashed.stat().st_mode) == 0o600
    assert f'hashedPasswordFile = "{hashed}"' in store.read("identity").text
    # Nobody confirms: the trial process restores the fragments and runs the revert command.
    assert wait_for(lambda: controller.pending() is None, timeout=20)
    assert wait_for(lambda: _lines(reverts) == ["revert"], timeout=10)
    assert _lines(calls) == ["dry-build", "test"]  # never switched
    assert store.names() == []
    assert controller.last_revert()["reason"] == "not confirmed in time"


def test_confirmed_trial_stays(rig, tmp_path, public_key):
    store, controller, calls, _, reverts = rig
    outcome = run.apply(_plan(store, tmp_path, public_key), controller, timeout=30)
    assert outcome.apply.pending is not None
    assert controller.confirm().ok
    assert _lines(calls) == ["dry-build", "test", "switch"] and _lines(reverts) == []
    assert "hostName = \"hv1\"" in store.read("identity").text


def test_zero_timeout_is_refused_for_a_network_change(rig, tmp_path, public_key):
    store, controller, calls, *_ = rig
    with pytest.raises(Exception, match="must be activated on trial"):
        run.apply(_plan(store, tmp_path, public_key), controller, timeout=0)
    assert not calls.exists() and store.names() == []


def test_confirm_command_names_the_dir():
    assert run.confirm_command(Path("/etc/nixos")) == "hyperconsole confirm"
    assert run.confirm_command(Path("/srv/nixos")) == "hyperconsole confirm --nixos-dir /srv/nixos"
    assert run.confirm_command(Path("/x"), demo=True) == "hyperconsole confirm --demo"


def test_flake_dir_is_never_edited(rig, nixos_dir, tmp_path, public_key):
    store, controller, calls, failing, _ = rig
    (nixos_dir / "configuration.nix").unlink()
    (nixos_dir / "flake.nix").write_text("{ outputs = { self }: { }; }\n")
    failing.write_text("dry-build\n")
    with pytest.raises(run.DryBuildFailed):
        run.apply(_plan(store, tmp_path, public_key), controller, timeout=30)
    assert (nixos_dir / "flake.nix").read_text() == "{ outputs = { self }: { }; }\n"
    assert sorted(os.listdir(nixos_dir)) == ["flake.nix", "hardware-configuration.nix", "hyperconsole"]
    assert store.names() == [] and _lines(calls) == ["dry-build"]


def test_password_file_that_cannot_be_written_stops_before_any_fragment(rig, nixos_dir, tmp_path, public_key):
    store, controller, calls, *_ = rig
    before = (nixos_dir / "configuration.nix").read_bytes()
    blocked = tmp_path / "not-a-dir"
    blocked.write_text("")
    answers = good_answers(public_key)
    answers.identity.admin.password_hash = secrets.sha512_crypt("correct horse battery", "salt")
    plan = fragments.plan(answers, facts(), store, blocked / "secrets")
    with pytest.raises(Exception, match="cannot write the password hash"):
        run.apply(plan, controller, timeout=30)
    assert store.names() == [] and not calls.exists()
    assert (nixos_dir / "configuration.nix").read_bytes() == before


def test_a_rebuild_command_that_cannot_run_leaves_configuration_as_it_was(nixos_dir, tmp_path, public_key):
    store = FragmentStore(nixos_dir)
    runner = RebuildRunner(nixos_dir, str(tmp_path / "no-such-rebuild"), state_dir=tmp_path / "state", use_systemd=False)
    controller = ConfirmOrRevert(store, runner, "true", state_dir=tmp_path / "state", use_systemd=False)
    before = (nixos_dir / "configuration.nix").read_bytes()
    with pytest.raises(Exception):
        run.apply(_plan(store, tmp_path, public_key), controller, timeout=30)
    assert (nixos_dir / "configuration.nix").read_bytes() == before and store.names() == []


def test_a_first_backup_job_is_in_the_review_and_applied_with_the_rest(rig, tmp_path, public_key, restic_bin):
    """backups.nix as `backup job add` writes it, in the review's diff; apply creates the password
    file (0600) and the repository, and the job reads back from the store."""
    from hyperconsole.backup import jobs as J
    from hyperconsole.setup import answers as A
    from hyperconsole.setup import validate

    store, controller, calls, *_ = rig
    job = J.Job(name="nightly", repository=str(tmp_path / "repo"), password_file=str(tmp_path / "pw" / "restic.pw"),
                schedule="*-*-* 02:30", retention=J.Retention(daily=7, weekly=4, monthly=6))
    (tmp_path / "pw").mkdir(mode=0o700)
    answers = good_answers(public_key, backups=A.Backups(skip=False, job=job, create_password=True))
    assert validate.check_all(answers, facts()) == []
    plan = fragments.plan(answers, facts(), store, tmp_path / "secrets")
    assert "hyperconsole/backups.nix" in plan.changeset.diff()
    assert "systemd.timers" in " ".join(plan.changed_paths) and any("nightly" in line for line in plan.impact)
    assert not (tmp_path / "pw" / "restic.pw").exists()  # nothing before apply
    run.apply(plan, controller, timeout=30)
    assert controller.confirm().ok
    assert J.read_jobs(store) == [job]
    assert stat.S_IMODE((tmp_path / "pw" / "restic.pw").stat().st_mode) == 0o600
    assert (tmp_path / "repo" / "config").is_file()
