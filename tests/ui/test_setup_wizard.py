"""The setup wizard by keyboard: every step at 80×24 and 200×50 on a scratch NixOS dir shaped
like a fresh install, through review and a trial that is kept; a bad answer shows its line under
its field; quitting mid-way and starting again continues at the same step with the answers."""

from __future__ import annotations

import pytest

from hyperconsole.config import Config
from hyperconsole.nixos.rebuild import RebuildRunner
from hyperconsole.nixos.revert import ConfirmOrRevert
from hyperconsole.nixos.store import FragmentStore
from hyperconsole.screens.setup import ApplyScreen, ReviewScreen, SetupApp, StepForm
from hyperconsole.doctor.model import Result, Status
from hyperconsole.setup import answers as A
from hyperconsole.setup.guard import Session
from tests.ui.conftest import fill_form, form_errors, screen_text, text_of, wait_until, workers_done
from tests.unit.nixos.conftest import recording_rebuild  # noqa: F401
from tests.unit.setup.conftest import facts, nixos_dir, public_key  # noqa: F401

CHECKS = [Result("virt.cpu", "hardware virtualisation in the CPU (vmx/svm)", Status.PASS,
                 "the CPU has hardware virtualisation (Intel VT-x, vmx)"),
          Result("setup.imports", "the configuration imports hyperconsole's fragments", Status.WARN,
                 "configuration.nix does not import ./hyperconsole yet", "the wizard adds it on apply")]


@pytest.fixture
def wizard(nixos_dir, tmp_path, recording_rebuild, script):  # noqa: F811
    rebuild, calls, failing = recording_rebuild
    reverts = tmp_path / "reverts.log"
    revert_cmd = script("fake-revert", f"echo revert >> {reverts}\n")

    def make(session=Session(None)):
        config = Config(nixos_dir=str(nixos_dir), rebuild_command=str(rebuild), revert_command=str(revert_cmd),
                        confirm_timeout=60)
        runner = RebuildRunner(nixos_dir, str(rebuild), state_dir=tmp_path / "state", use_systemd=False)
        controller = ConfirmOrRevert(FragmentStore(nixos_dir), runner, str(revert_cmd), state_dir=tmp_path / "state",
                                     use_systemd=False, current_system=tmp_path / "cur", system_profile=tmp_path / "p" / "system")
        return SetupApp(config, secrets_dir=tmp_path / "secrets", facts=facts(session=session), checks=CHECKS,
                        controller=controller)

    make.calls = calls
    return make


async def _at(pilot, step: str) -> StepForm:
    await wait_until(pilot, lambda: isinstance(pilot.app.screen, StepForm) and pilot.app.screen.step.name == step, 20)
    return pilot.app.screen


async def _next(pilot) -> None:
    await pilot.press("ctrl+s")
    for _ in range(3):
        await pilot.pause()
        await workers_done(pilot.app)


async def walk_to_review(pilot, key: str, backup=None) -> None:
    form = await _at(pilot, "preflight")
    intro = text_of(form.query_one("#form-intro"))
    assert "PASS  the CPU has hardware virtualisation (Intel VT-x, vmx)" in intro
    assert "WARN  configuration.nix does not import" in intro and "the wizard adds it on apply" in intro
    await _next(pilot)
    await _at(pilot, "identity")
    await fill_form(pilot, {"hostname": "hv1.example.com", "timezone": "Europe/Berlin", "admin": "alice",
                            "key1": key, "password": "correct horse battery"})
    form = await _at(pilot, "network")
    await fill_form(pilot, {"uplink": "eno1", "mode": "static", "address": "192.0.2.10/24", "gateway": "192.0.2.1",
                            "dns": "192.0.2.53"})
    for step in ("storage", "virtualisation", "security"):
        await _at(pilot, step)
        await _next(pilot)
    await _at(pilot, "backups")
    if backup is None:
        await _next(pilot)
    else:
        await backup(pilot)
    await wait_until(pilot, lambda: isinstance(pilot.app.screen, ReviewScreen) and pilot.app.screen.plan is not None, 20)


@pytest.mark.parametrize("size", [(80, 24), (200, 50)], ids=["80x24", "200x50"])
async def test_walk_every_step_then_keep_the_trial(wizard, size, public_key, nixos_dir):  # noqa: F811
    app = wizard()
    async with app.run_test(size=size) as pilot:
        await walk_to_review(pilot, public_key)
        review = pilot.app.screen
        body = text_of(review.query_one("#review-body"))
        assert "hyperconsole/identity.nix" in body and "networking.bridges.br0.interfaces" in body
        assert "you are not connected over SSH" in body
        assert not (nixos_dir / "hyperconsole").exists()  # nothing written before apply
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: isinstance(app.screen, ApplyScreen) and app.screen.state == "trial", 30)
        assert wizard.calls.read_text().split() == ["dry-build", "test"]
        await pilot.press("k")
        await wait_until(pilot, lambda: app.screen.state == "kept", 30)
        assert wizard.calls.read_text().split() == ["dry-build", "test", "switch"]
        assert app.done and A.load_saved() is None
    store = FragmentStore(nixos_dir)
    assert 'hostName = "hv1"' in store.read("identity").text
    assert "./hyperconsole" in (nixos_dir / "configuration.nix").read_text()


async def test_over_ssh_the_apply_step_shows_the_command_for_a_new_login(wizard, public_key):  # noqa: F811
    app = wizard(Session("alice", {"alice": 1}))
    async with app.run_test(size=(100, 30)) as pilot:
        await walk_to_review(pilot, public_key)
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: isinstance(app.screen, ApplyScreen) and app.screen.state == "trial", 30)
        status = text_of(app.screen.query_one("#apply-status"))
        assert "From a NEW SSH login" in status and "hyperconsole confirm --nixos-dir" in status
        assert not app.screen.check_action("keep", ())  # this session cannot keep it
        app.controller.confirm()  # what the new login's `hyperconsole confirm` does
        await wait_until(pilot, lambda: app.screen.state == "kept", 30)


async def test_bad_answers_stay_under_their_fields(wizard):
    app = wizard()
    async with app.run_test(size=(80, 24)) as pilot:
        await _at(pilot, "preflight")
        await _next(pilot)
        form = await _at(pilot, "identity")
        await fill_form(pilot, {"hostname": "hv1..x", "timezone": "Berlin", "admin": "alice", "key1": "ssh-rsa nope"})
        errors = form_errors(form)
        assert errors["hostname"].startswith("hostname 'hv1..x' has a dot")
        assert errors["timezone"].endswith("(did you mean Europe/Berlin?)")
        assert errors["key1"] == "SSH key 'ssh-rsa nope' is not a public key ssh-keygen accepts"
        assert form.widget("hostname").value == "hv1..x"  # what was typed stays
        assert pilot.app.screen is form
        await pilot.press("escape")
        await _at(pilot, "preflight")


async def test_quit_mid_way_and_resume(wizard, public_key):  # noqa: F811
    app = wizard()
    async with app.run_test(size=(80, 24)) as pilot:
        await _at(pilot, "preflight")
        await _next(pilot)
        await _at(pilot, "identity")
        await fill_form(pilot, {"hostname": "hv7", "timezone": "UTC", "admin": "carol", "key1": public_key})
        await _at(pilot, "network")
        await workers_done(app)
        await pilot.press("ctrl+q")
    saved = A.load_saved()
    assert saved.step == "network" and saved.identity.hostname == "hv7"
    again = wizard()
    async with again.run_test(size=(80, 24)) as pilot:
        form = await _at(pilot, "network")
        await pilot.press("escape")
        form = await _at(pilot, "identity")
        assert form.widget("hostname").value == "hv7" and form.widget("key1").value == public_key


async def test_timezone_field_completes_from_the_zoneinfo_list(wizard):
    app = wizard()
    async with app.run_test(size=(80, 24)) as pilot:
        await _at(pilot, "preflight")
        await _next(pilot)
        form = await _at(pilot, "identity")
        form.widget("timezone").value = ""
        form.widget("timezone").focus()
        await pilot.press(*"Europe/Berl")
        await pilot.press("right")
        await pilot.pause()
        assert form.widget("timezone").value == "Europe/Berlin"
        assert "Setup 2/9: Identity" in screen_text(app)


async def test_a_first_backup_job_from_the_backups_step(wizard, public_key, nixos_dir, tmp_path):  # noqa: F811
    """Step 7: a bad schedule stays under its field; a good job is in the review's diff and, once
    applied, in backups.nix with its password file created 0600."""
    import stat

    from hyperconsole.backup import jobs as J

    app = wizard()
    password = tmp_path / "restic.pw"

    async def backup(pilot) -> None:
        form = pilot.app.screen
        await fill_form(pilot, {"skip": False, "name": "nightly", "repository": str(tmp_path / "repo"),
                                "password_file": str(password), "create_password": True, "schedule": "sometimes"})
        assert form_errors(form)["schedule"].startswith("schedule 'sometimes' is not a systemd calendar expression")
        assert pilot.app.screen is form
        await fill_form(pilot, {"schedule": "Sun 03:00", "keep_monthly": "12"})

    async with app.run_test(size=(100, 30)) as pilot:
        await walk_to_review(pilot, public_key, backup)
        body = text_of(pilot.app.screen.query_one("#review-body"))
        assert "hyperconsole/backups.nix" in body and "hyperconsole-backup-nightly" in body
        assert not password.exists()
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: isinstance(app.screen, ApplyScreen) and app.screen.state == "trial", 30)
        await pilot.press("k")
        await wait_until(pilot, lambda: app.screen.state == "kept", 30)
    [job] = J.read_jobs(FragmentStore(nixos_dir))
    assert (job.name, job.schedule, job.retention.monthly) == ("nightly", "Sun 03:00", 12)
    assert stat.S_IMODE(password.stat().st_mode) == 0o600
