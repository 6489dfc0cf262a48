"""The lock-out guard: each case of the issue refused with one line, and `profile apply` over SSH
as root with the headless profile refused before anything is written."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from hyperconsole import profiles
from hyperconsole.errors import ValidationError
from hyperconsole.nixos.store import FragmentStore
from hyperconsole.setup import answers as A, fragments, guard
from tests.unit.setup.conftest import facts, good_answers

SSH = {"SSH_CONNECTION": "198.51.100.7 52000 192.0.2.10 22"}


def _options(*, root_login="prohibit-password", passwords=True, keys=None, enable=True):
    users = {user: {"isNormalUser": True, "openssh": {"authorizedKeys": {"keys": ["k"] * n}}}
             for user, n in (keys or {}).items()}
    return {"services": {"openssh": {"enable": enable, "settings": {
        "PermitRootLogin": root_login, "PasswordAuthentication": passwords}}}, "users": {"users": users}}


def test_root_over_ssh_losing_root_login_is_refused():
    with pytest.raises(ValidationError) as exc:
        guard.check(_options(root_login="no"), guard.Session("root", {"root": 2}))
    assert str(exc.value).startswith('refused: you are logged in over SSH as root and after this change root could '
                                      'not log in (PermitRootLogin becomes "no"); nothing was changed')


def test_root_over_ssh_without_keys_and_prohibit_password_is_refused():
    with pytest.raises(ValidationError, match='PermitRootLogin is "prohibit-password" and root has no SSH key'):
        guard.check(_options(), guard.Session("root", {"root": 0}))
    guard.check(_options(), guard.Session("root", {"root": 1}))  # its key on the host keeps it in


def test_session_user_without_key_when_passwords_go_off_is_refused():
    with pytest.raises(ValidationError, match="password logins go off and bob has no SSH key"):
        guard.check(_options(passwords=False), guard.Session("bob", {}))
    guard.check(_options(passwords=False, keys={"bob": 1}), guard.Session("bob", {}))
    guard.check(_options(passwords=False), guard.Session("bob", {"bob": 1}))


def test_admin_without_key_when_root_login_or_passwords_go_off():
    with pytest.raises(ValidationError, match="root login is off and the admin user alice has no SSH key"):
        guard.check(_options(root_login="no", keys={"alice": 0}), guard.Session(None), admin="alice")
    with pytest.raises(ValidationError, match="password logins are off and the admin user alice has no SSH key"):
        guard.check(_options(passwords=False, keys={"alice": 0}), guard.Session(None), admin="alice")
    guard.check(_options(root_login="no", passwords=False, keys={"alice": 1}), guard.Session(None), admin="alice")


def test_sshd_off_over_ssh_is_refused():
    with pytest.raises(ValidationError, match="turns the SSH server off"):
        guard.check(_options(enable=False), guard.Session("alice", {"alice": 1}))


def test_local_console_may_apply_headless():
    catalog = profiles.load_catalog()
    guard.check(profiles.profile_options(catalog, "headless"), guard.Session(None))


def test_session_reads_sudo_user_and_host_keys():
    session = guard.current_session({**SSH, "SUDO_USER": "hc-no-such-user"})
    assert session.ssh_user == "hc-no-such-user" and session.keys_on_host("hc-no-such-user") == 0
    assert guard.current_session({}).over_ssh is False


def test_wizard_hands_root_over_to_the_keyed_admin_and_says_so(nixos_dir, tmp_path, public_key):
    answers = good_answers(public_key, security=A.Security("headless"))
    session = guard.Session("root", {"root": 1})
    plan = fragments.plan(answers, facts(session=session), FragmentStore(nixos_dir), tmp_path / "secrets")
    assert plan.impact[-1].startswith('root loses SSH login (PermitRootLogin becomes "no"): confirm from a new SSH '
                                      "login as alice with its key")
    # Without the wizard's new-login confirmation, the same change is refused.
    with pytest.raises(ValidationError, match="as root and after this change root could not log in"):
        guard.check(profiles.profile_options(profiles.load_catalog(), "headless"), session, admin="alice")
    no_key = good_answers(public_key, identity=A.Identity("hv1", "UTC", A.Admin("alice", [])))
    with pytest.raises(ValidationError, match="admin user alice has no SSH key"):
        fragments.plan(no_key, facts(), FragmentStore(nixos_dir), tmp_path / "secrets")
    assert not (nixos_dir / "hyperconsole").exists()  # nothing written by planning


def test_profile_apply_headless_over_ssh_is_refused_with_one_line(nixos_dir, recording_rebuild):
    rebuild, calls, _ = recording_rebuild
    env = {**os.environ, **SSH, "SUDO_USER": "hc-no-such-user"}
    done = subprocess.run([sys.executable, "-m", "hyperconsole", "profile", "apply", "headless", "--yes",
                           "--nixos-dir", str(nixos_dir), "--rebuild-cmd", str(rebuild)],
                          capture_output=True, text=True, timeout=60, env=env, stdin=subprocess.DEVNULL)
    assert done.returncode == 1
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        "error: refused: you are logged in over SSH as hc-no-such-user and after this change hc-no-such-user "
        "could not log in (password logins go off and hc-no-such-user has no SSH key); nothing was changed")
    assert not (nixos_dir / "hyperconsole" / "security-profile.nix").exists() and not calls.exists()


def test_profile_apply_keeps_the_wizards_admin_in_mind(nixos_dir):
    store = FragmentStore(nixos_dir)
    store.commit(store.prepare({"identity": {"users": {"users": {"alice": {"isNormalUser": True}}}}},
                               message="identity", meta={"identity": {"admin": "alice"}}))
    change = profiles.prepare_profile_change(store, profiles.load_catalog(), "management")
    with pytest.raises(ValidationError, match="admin user alice has no SSH key"):
        guard.check_changeset(store, change, guard.Session(None))
