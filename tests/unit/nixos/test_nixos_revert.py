"""Confirm-or-revert end to end: real detached timer processes, real stand-in commands."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hyperconsole.errors import HyperconsoleError
from hyperconsole.nixos.rebuild import RebuildRunner
from hyperconsole.nixos.revert import (
    ConfirmOrRevert, NoPendingChange, PendingChange, load_pending, systemd_timer_argv, timer_argv,
)
from hyperconsole.nixos.store import FragmentStore


@pytest.fixture
def setup(nixos_dir, tmp_path, recording_rebuild, script):
    rebuild, calls, failing = recording_rebuild
    reverts = tmp_path / "reverts.log"
    revert_cmd = script("fake-revert", f'echo "re-activating previous generation"; echo revert >> {reverts}\n')
    store = FragmentStore(nixos_dir)
    store.commit(store.prepare({"ssh": {"services": {"openssh": {"enable": True}}}}, message="base"))
    runner = RebuildRunner(nixos_dir, str(rebuild), state_dir=tmp_path / "state", use_systemd=False)
    controller = ConfirmOrRevert(store, runner, str(revert_cmd), state_dir=tmp_path / "state", use_systemd=False)
    return store, controller, calls, failing, reverts


def _risky_change(store: FragmentStore):
    return store.prepare(
        {"ssh": {"services": {"openssh": {"enable": False}}}, "firewall": {"networking": {"firewall": {"enable": True}}}},
        message="risky",
    )


def _lines(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


def _timer_alive(record: PendingChange) -> bool:
    pid = record.timer["pid"]
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split()[2]
    except OSError:
        return False
    return state != "Z"


def test_unconfirmed_change_reverts_by_itself_and_restores_files(setup, wait_for):
    store, controller, calls, _, reverts = setup
    before = {name: store.read(name).text for name in ("ssh", "firewall")}
    outcome = controller.apply(_risky_change(store), timeout=1, description="risky change")
    assert outcome.rebuild.ok and _lines(calls) == ["test"]
    pending = outcome.pending
    assert pending is not None and pending.state == "armed" and 0 < pending.remaining() <= 1
    assert store.read("ssh").value() == {"services": {"openssh": {"enable": False}}}
    assert _timer_alive(pending)
    # Nobody confirms: the detached timer restores the files and runs the revert command.
    assert wait_for(lambda: controller.pending() is None, timeout=15)
    assert wait_for(lambda: not _timer_alive(pending), timeout=5)
    assert _lines(reverts) == ["revert"]
    assert _lines(calls) == ["test"]  # no switch happened
    assert store.read("ssh").text == before["ssh"]
    assert not store.read("firewall").exists  # created by the change, so removed by the revert
    assert "firewall" not in (store.dir / "default.nix").read_text()
    last = controller.last_revert()
    assert last["reason"] == "not confirmed in time" and last["status"] == "succeeded"
    assert sorted(last["restored"]) == ["firewall", "ssh"]


def test_confirm_cancels_the_revert_and_switches(setup, wait_for):
    store, controller, calls, _, reverts = setup
    outcome = controller.apply(_risky_change(store), timeout=2, description="risky change")
    pending = outcome.pending
    result = controller.confirm()
    assert result.ok and _lines(calls) == ["test", "switch"]
    assert controller.pending() is None
    assert wait_for(lambda: not _timer_alive(pending), timeout=5)
    time.sleep(2.5)  # past the original deadline: still nothing reverted
    assert _lines(reverts) == []
    assert store.read("ssh").value() == {"services": {"openssh": {"enable": False}}}
    assert controller.last_revert() is None
    with pytest.raises(NoPendingChange):
        controller.confirm()


def test_failed_trial_restores_files_at_once(setup):
    store, controller, calls, failing, reverts = setup
    failing.write_text("test\n")
    before = store.read("ssh").text
    outcome = controller.apply(_risky_change(store), timeout=30, description="risky change")
    assert outcome.reverted and not outcome.rebuild.ok
    assert outcome.rebuild.error_lines == ["error: activation of test failed"]
    assert _lines(reverts) == ["revert"]
    assert store.read("ssh").text == before and not store.read("firewall").exists
    assert controller.pending() is None
    assert controller.last_revert()["reason"] == "trial rebuild failed"


def test_a_second_change_waits_for_the_first(setup):
    store, controller, *_ = setup
    controller.apply(_risky_change(store), timeout=30, description="first")
    try:
        change = store.prepare({"other": {"a": 1}}, message="second")
        with pytest.raises(HyperconsoleError, match="waiting for confirmation"):
            controller.apply(change, timeout=30, description="second")
        assert not store.read("other").exists
    finally:
        controller.confirm()


def test_zero_timeout_switches_directly(setup):
    store, controller, calls, _, _ = setup
    outcome = controller.apply(_risky_change(store), timeout=0, description="direct")
    assert outcome.pending is None and outcome.rebuild.ok and _lines(calls) == ["switch"]


def test_new_session_sees_the_pending_change(setup, nixos_dir, tmp_path):
    store, controller, *_ = setup
    controller.apply(_risky_change(store), timeout=30, description="risky change")
    try:
        record = load_pending(FragmentStore(nixos_dir).dir)
        assert record.description == "risky change" and record.state == "armed"
        assert set(record.previous_texts) == {"ssh", "firewall"} and record.previous_texts["firewall"] is None
    finally:
        controller.confirm()


def test_systemd_timer_argv():
    command = timer_argv(Path("/etc/nixos"), "abc123def456", Path("/var/lib/hc"))
    argv = systemd_timer_argv("hyperconsole-revert-abc123def456", 120, command)
    assert argv[:3] == ["systemd-run", "--unit=hyperconsole-revert-abc123def456", "--on-active=120s"]
    assert argv[argv.index("--") + 1:] == command
    assert command[1:3] == ["-m", "hyperconsole.cli.revert_timer"] and "abc123def456" in command


def test_systemd_timer_is_armed_with_systemd_run(setup, monkeypatch):
    store, controller, *_ = setup
    controller.use_systemd = True
    seen = []
    real_run = subprocess.run

    def fake_run(argv, *args, **kwargs):
        if argv[0] in ("systemd-run", "systemctl"):
            seen.append(argv)
            return subprocess.CompletedProcess(argv, 0, "", "")
        return real_run(argv, *args, **kwargs)

    monkeypatch.setattr("hyperconsole.nixos.revert.subprocess.run", fake_run)
    outcome = controller.apply(_risky_change(store), timeout=60, description="risky")
    assert outcome.pending.timer == {"kind": "systemd", "unit": f"hyperconsole-revert-{outcome.pending.change_id}"}
    assert seen[0][0] == "systemd-run" and "--on-active=60s" in seen[0]
    controller.confirm()
    assert seen[-1][:2] == ["systemctl", "stop"] and seen[-1][2].endswith(".timer")


CLI_APPLY = [sys.executable, "-m", "hyperconsole"]


def test_cli_apply_returns_and_the_timer_outlives_it(nixos_dir, tmp_path, recording_rebuild, script, wait_for):
    rebuild, calls, _ = recording_rebuild
    reverts = tmp_path / "reverts.log"
    revert_cmd = script("fake-revert", f"echo revert >> {reverts}\n")
    common = ["--nixos-dir", str(nixos_dir), "--rebuild-cmd", str(rebuild), "--revert-cmd", str(revert_cmd)]
    started = time.monotonic()
    done = subprocess.run(
        CLI_APPLY + ["profile", "apply", "headless", "--toggle", "strict-ssh", "--confirm-timeout", "2", *common],
        capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stderr
    assert time.monotonic() - started < 10  # returned right after `test` (no TTY), did not wait
    assert "+++ b/hyperconsole/security-profile.nix" in done.stdout  # the diff came first
    assert "hyperconsole confirm" in done.stdout
    fragment = nixos_dir / "hyperconsole" / "security-profile.nix"
    assert fragment.exists()
    # The console process has exited; the detached timer still reverts.
    assert wait_for(lambda: _lines(reverts) == ["revert"], timeout=15)
    assert wait_for(lambda: not fragment.exists(), timeout=5)
    assert _lines(calls) == ["test"]
    status = subprocess.run(CLI_APPLY + ["nixos", "status", *common], capture_output=True, text=True, timeout=30)
    assert "last revert: security profile headless + strict-ssh" in status.stdout


def test_cli_confirm_keeps_the_change(nixos_dir, tmp_path, recording_rebuild, script):
    rebuild, calls, _ = recording_rebuild
    reverts = tmp_path / "reverts.log"
    revert_cmd = script("fake-revert", f"echo revert >> {reverts}\n")
    common = ["--nixos-dir", str(nixos_dir), "--rebuild-cmd", str(rebuild), "--revert-cmd", str(revert_cmd)]
    apply = subprocess.run(CLI_APPLY + ["profile", "apply", "management", "--confirm-timeout", "3", *common],
                           capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert apply.returncode == 0, apply.stderr
    confirm = subprocess.run(CLI_APPLY + ["confirm", *common], capture_output=True, text=True, timeout=30)
    assert confirm.returncode == 0, confirm.stderr
    assert "confirmed" in confirm.stdout
    time.sleep(3.5)
    assert _lines(reverts) == [] and _lines(calls) == ["test", "switch"]
    assert (nixos_dir / "hyperconsole" / "security-profile.nix").exists()
    again = subprocess.run(CLI_APPLY + ["confirm", *common], capture_output=True, text=True, timeout=30)
    assert again.returncode == 1 and again.stderr.strip() == "error: nothing is waiting for confirmation"


def test_trial_that_cannot_start_restores_files_without_reactivating(setup, nixos_dir, tmp_path):
    store, controller, calls, _, reverts = setup
    controller.runner = RebuildRunner(nixos_dir, str(tmp_path / "missing-rebuild"), state_dir=tmp_path / "state", use_systemd=False)
    before = store.read("ssh").text
    with pytest.raises(HyperconsoleError, match="cannot run"):
        controller.apply(_risky_change(store), timeout=30, description="risky")
    assert store.read("ssh").text == before and not store.read("firewall").exists
    assert controller.pending() is None and _lines(reverts) == []
    assert "trial rebuild could not start" in controller.last_revert()["reason"]


OWNER_DIES = """
import os, sys
from pathlib import Path
from hyperconsole.nixos.rebuild import RebuildRunner
from hyperconsole.nixos.revert import ConfirmOrRevert
from hyperconsole.nixos.store import FragmentStore
nixos_dir, rebuild, revert, state = sys.argv[1:5]
store = FragmentStore(nixos_dir)
runner = RebuildRunner(nixos_dir, rebuild, state_dir=Path(state), use_systemd=False)
controller = ConfirmOrRevert(store, runner, revert, state_dir=Path(state), use_systemd=False)
change = store.prepare({"ssh": {"services": {"openssh": {"enable": False}}}}, message="m")
controller.apply(change, timeout=600, description="owner dies")
"""


def test_console_killed_during_trial_reverts_at_once(setup, nixos_dir, tmp_path, script, wait_for):
    store, controller, _, _, reverts = setup
    started = tmp_path / "trial-started"
    hanging = script("hanging-rebuild", f"echo $$ > {started}; exec sleep 60\n")
    before = store.read("ssh").text
    console = subprocess.Popen([sys.executable, "-c", OWNER_DIES, str(nixos_dir), str(hanging),
                                " ".join(controller.revert_argv), str(tmp_path / "state")])
    assert wait_for(lambda: started.exists() and started.read_text().strip(), timeout=15)
    assert controller.pending().state == "testing"
    os.kill(console.pid, 9)
    console.wait()
    # Its trial rebuild (own session) may outlive it; the revert waits for the rebuild lock,
    # which died with the console, and then restores.
    assert wait_for(lambda: controller.pending() is None, timeout=15)
    assert store.read("ssh").text == before and _lines(reverts) == ["revert"]
    assert controller.last_revert()["reason"] == "the console exited during the trial rebuild"
    try:
        os.kill(int(started.read_text()), 9)  # the orphaned stand-in rebuild, by its own pid
    except ProcessLookupError:
        pass


def test_default_confirm_timeout_only_for_risky_options(nixos_dir):
    from hyperconsole.nixos.revert import default_confirm_timeout

    store = FragmentStore(nixos_dir)
    risky = store.prepare({"fw": {"networking": {"firewall": {"allowedTCPPorts": [80]}}}}, message="m")
    bridge = store.prepare({"br": {"networking": {"bridges": {"br0": {"interfaces": ["eth0"]}}}}}, message="m")
    harmless = store.prepare({"motd": {"networking": {"hostName": "hv1"}, "time": {"timeZone": "UTC"}}}, message="m")
    assert default_confirm_timeout(risky, 120) == 120
    assert default_confirm_timeout(bridge, 120) == 120
    assert default_confirm_timeout(harmless, 120) == 0
    store.commit(risky)
    # Removing a risky fragment is risky too (the old text is checked as well).
    assert default_confirm_timeout(store.prepare({"fw": None}, message="m"), 90) == 90


def test_only_options_whose_value_changes_decide_the_confirm_window():
    from hyperconsole.nixos.revert import changed_paths, default_confirm_timeout
    from hyperconsole.nixos.render import render_fragment
    from hyperconsole.nixos.store import ChangeSet, FragmentChange

    base = {"networking": {"firewall": {"interfaces": {"br0": {"allowedTCPPorts": [22]}}},
                           "nameservers": ["1.1.1.1"]}}
    dns = {"networking": {**base["networking"], "nameservers": ["9.9.9.9"]}}
    ports = {"networking": {**base["networking"], "firewall": {"interfaces": {"br0": {"allowedTCPPorts": [22, 80]}}}}}

    def window(old, new) -> int:
        change = FragmentChange("network", render_fragment(old) if old is not None else None,
                                render_fragment(new) if new is not None else None, "")
        return default_confirm_timeout(ChangeSet((change,), "m"), 120)

    assert list(changed_paths(base, dns)) == ["networking.nameservers"]
    assert window(base, dns) == 0  # the firewall is in the file but unchanged
    assert window(base, ports) == 120
    assert window(None, base) == 120  # a new fragment with firewall rules
    assert window(base, None) == 120  # removing it drops the rules
    assert window({"networking": {"nameservers": ["1.1.1.1"]}}, {"networking": {"nameservers": []}}) == 0
