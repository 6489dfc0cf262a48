"""NixOS checks on a scratch NixOS dir written through the FragmentStore: the import check and its
fix (real nix-instantiate), drift against a system whose etc holds what default.nix records, a
trial change and its time left, the firewall against a real listening socket. `sshd -T` output is
recorded (this machine has no sshd): that test says so in its name."""

from __future__ import annotations

import json
import shutil
import socket
import time
from pathlib import Path

import pytest

from hyperconsole import profiles
from hyperconsole.config import Config
from hyperconsole.doctor import nixoschecks
from hyperconsole.doctor.model import Status
from hyperconsole.nixos.revert import PendingChange
from hyperconsole.nixos.store import APPLIED_ETC, FragmentStore
from tests.unit.doctor.conftest import run_one, write_command


@pytest.fixture
def nixos(tmp_path):
    directory = tmp_path / "nixos"
    directory.mkdir()
    return directory


@pytest.mark.parametrize("release, status, why", [
    ('NAME=NixOS\nID=nixos\nVERSION_ID="25.05"\nVERSION_CODENAME=warbler\n', Status.PASS, "NixOS 25.05 (warbler)"),
    ('ID=debian\nPRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\n', Status.FAIL,
     "this is Debian GNU/Linux 12 (bookworm), not NixOS: the fragments hyperconsole writes take effect only on NixOS"),
])
def test_version_recorded_os_release(make_ctx, tmp_path, release, status, why):
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/os-release").write_text(release)
    result = run_one(make_ctx(etc=tmp_path / "etc"), "nixos.version")
    assert (result.status, result.why) == (status, why)


def test_version_of_this_machine(make_ctx):
    result = run_one(make_ctx(), "nixos.version")
    is_nixos = "ID=nixos" in Path("/etc/os-release").read_text().splitlines()
    assert result.status is (Status.PASS if is_nixos else Status.FAIL), result
    missing = run_one(make_ctx(etc=Path("/nonexistent")), "nixos.version")
    assert missing.status is Status.FAIL and "cannot tell whether this is NixOS" in missing.why


def _config(tmp_path) -> Config:
    return Config(nixos_dir=str(tmp_path / "nixos"), current_system=str(tmp_path / "current-system"))


def _build_system(tmp_path, store: FragmentStore) -> None:
    """What a rebuild leaves: the running system's etc holding default.nix's record. Taken from
    the default.nix on disk by evaluating it with the real Nix evaluator."""
    nix = shutil.which("nix-instantiate")
    if nix is None:
        pytest.skip("no nix-instantiate")
    import subprocess

    expr = f'(import {store.dir}/default.nix).environment.etc."{APPLIED_ETC}".text'
    done = subprocess.run([nix, "--eval", "--strict", "--json", "-E", expr], capture_output=True, text=True, check=True)
    etc = tmp_path / "current-system" / "etc" / APPLIED_ETC
    etc.parent.mkdir(parents=True, exist_ok=True)
    etc.write_text(json.loads(done.stdout))


def _write(store: FragmentStore, name: str, value: dict) -> None:
    store.commit(store.prepare({name: value}, message=f"test {name}"))


CONFIGURATION = "{ config, pkgs, ... }:\n{\n  imports = [ ./hardware-configuration.nix ];\n}\n"


def test_imports_missing_is_fixed_by_adding_the_import(make_ctx, tmp_path, nixos):
    if shutil.which("nix-instantiate") is None:
        pytest.skip("no nix-instantiate")
    (nixos / "configuration.nix").write_text(CONFIGURATION)
    (nixos / "hardware-configuration.nix").write_text("{ }\n")
    ctx = make_ctx(_config(tmp_path))
    result = run_one(ctx, "nixos.imports")
    assert result.status is Status.FAIL and "configuration.nix does not import ./hyperconsole" in result.why
    assert result.fix is nixoschecks.ADD_IMPORT
    assert "checked with nix-instantiate" in result.fix.apply(None, ctx.config)
    assert "./hyperconsole" in (nixos / "configuration.nix").read_text()
    assert run_one(ctx, "nixos.imports").status is Status.PASS


def test_imports_without_configuration_files(make_ctx, tmp_path, nixos):
    assert run_one(make_ctx(_config(tmp_path)), "nixos.imports").status is Status.WARN
    assert run_one(make_ctx(Config(nixos_dir=str(tmp_path / "absent"))), "nixos.imports").status is Status.SKIP


def test_drift_follows_the_record_in_the_running_system(make_ctx, tmp_path, nixos):
    store = FragmentStore(nixos)
    ctx = make_ctx(_config(tmp_path))
    assert run_one(ctx, "nixos.drift").status is Status.SKIP  # no running system
    (tmp_path / "current-system" / "etc").mkdir(parents=True)
    assert run_one(ctx, "nixos.drift").why == "no fragments written, none in force"
    _write(store, "firewall", {"networking": {"firewall": {"allowedTCPPorts": [22]}}})
    result = run_one(ctx, "nixos.drift")  # written, never rebuilt: the system was built without it
    assert result.status is Status.WARN and "built without hyperconsole's fragments (firewall" in result.why
    _build_system(tmp_path, store)
    assert run_one(ctx, "nixos.drift").why == "the running system was built from the fragments on disk (1)"
    _write(store, "firewall", {"networking": {"firewall": {"allowedTCPPorts": [22, 80]}}})
    _write(store, "dns", {"networking": {"nameservers": ["192.0.2.53"]}})
    result = run_one(ctx, "nixos.drift")
    assert result.status is Status.WARN
    assert result.why == "fragments differ from the running system (changed: firewall; not yet applied: dns)"
    _build_system(tmp_path, store)
    store.commit(store.prepare({"dns": None}, message="remove dns"))
    assert "removed but still in force: dns" in run_one(ctx, "nixos.drift").why


def test_drift_after_an_edit_behind_the_stores_back(make_ctx, tmp_path, nixos):
    store = FragmentStore(nixos)
    _write(store, "firewall", {"networking": {"firewall": {"allowedTCPPorts": [22]}}})
    _build_system(tmp_path, store)
    (store.dir / "firewall.nix").write_text((store.dir / "firewall.nix").read_text().replace("22", "2222"))
    assert run_one(make_ctx(_config(tmp_path)), "nixos.drift").why == \
        "fragments differ from the running system (changed: firewall)"


def _pending(store: FragmentStore, **changes) -> None:
    now = time.time()
    record = PendingChange(change_id="c1", description="network: add bridge br0", created=now,
                           deadline=now + 90, timeout=90, state="armed", nixos_dir=str(store.nixos_dir),
                           previous_texts={}, test_argv=[], switch_argv=[], revert_argv=[])
    store.ensure_dir()
    (store.dir / ".pending-change.json").write_text(record.replace(**changes).to_json())


def test_trial_and_its_time_left(make_ctx, tmp_path, nixos):
    store = FragmentStore(nixos)
    ctx = make_ctx(_config(tmp_path))
    assert run_one(ctx, "nixos.trial").why == "no host change on trial"
    _pending(store)
    result = run_one(ctx, "nixos.trial")
    assert result.status is Status.WARN
    assert result.why.startswith("network: add bridge br0: on trial, reverts by itself in 8") or \
        result.why.startswith("network: add bridge br0: on trial, reverts by itself in 9")
    _pending(store, trial_pid=2 ** 22 + 7)  # a trial process that is gone
    assert run_one(ctx, "nixos.trial").status is Status.FAIL


RECORDED_SSHD_T = """port 22
permitrootlogin prohibit-password
passwordauthentication yes
kbdinteractiveauthentication no
pubkeyauthentication yes
"""


def test_ssh_settings_recorded_sshd_output_against_the_headless_profile(make_ctx, tmp_path, nixos, bindir):
    store = FragmentStore(nixos)
    catalog = profiles.load_catalog()
    store.commit(profiles.prepare_profile_change(store, catalog, "headless"))
    write_command(bindir, "sshd", f"cat <<'EOF'\n{RECORDED_SSHD_T}EOF")
    ctx = make_ctx(_config(tmp_path))
    result = run_one(ctx, "nixos.ssh")
    assert result.status is Status.FAIL
    assert result.why == ("SSH settings differ from profile headless: PasswordAuthentication is yes, profile wants no; "
                          "PermitRootLogin is prohibit-password, profile wants no")
    fixed = RECORDED_SSHD_T.replace("prohibit-password", "no").replace("passwordauthentication yes", "passwordauthentication no")
    write_command(bindir, "sshd", f"cat <<'EOF'\n{fixed}EOF")
    assert run_one(ctx, "nixos.ssh").status is Status.PASS
    assert run_one(make_ctx(_config(tmp_path), euid=1000), "nixos.ssh").why == "needs root: sshd -T reads the host keys"


def test_ssh_without_a_profile(make_ctx, tmp_path, nixos):
    assert run_one(make_ctx(_config(tmp_path)), "nixos.ssh").why.startswith("no security profile applied")


def test_firewall_ports_against_a_real_listening_socket(make_ctx, tmp_path, nixos):
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("0.0.0.0", 0))
    listener.listen()
    port = listener.getsockname()[1]
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("0.0.0.0", 0))
        idle = probe.getsockname()[1]
    try:
        store = FragmentStore(nixos)
        ctx = make_ctx(_config(tmp_path))
        assert run_one(ctx, "nixos.firewall").why == "hyperconsole's fragments open no firewall ports"
        _write(store, "network", {"networking": {"firewall": {"interfaces": {"br0": {"allowedTCPPorts": [port]}}}}})
        assert run_one(ctx, "nixos.firewall").status is Status.PASS
        _write(store, "network", {"networking": {"firewall": {"allowedTCPPorts": [port, idle]}}})
        result = run_one(ctx, "nixos.firewall")
        assert result.status is Status.WARN and result.why == f"open in the firewall but nothing listens: {idle}/tcp"
    finally:
        listener.close()
