"""Confirm-or-revert end to end: real detached timer processes, real stand-in commands."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hyperconsole.errors import HyperconsoleError
from hyperconsole.nixos.rebuild import RebuildBusyError, RebuildRunner, pid_alive
from hyperconsole.nixos.revert import (
    LAST_REVERT_NAME, PENDING_NAME, ConfirmOrRevert, NoPendingChange, PendingChange, load_pending, trial_argv,
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
    controller = ConfirmOrRevert(store, runner, str(revert_cmd), state_dir=tmp_path / "state", use_systemd=False,
                                 current_system=tmp_path / "current-system", system_profile=tmp_path / "profiles" / "system")
    return store, controller, calls, failing, reverts


def _risky_change(store: FragmentStore):
    return store.prepare(
        {"ssh": {"services": {"openssh": {"enable": False}}}, "firewall": {"networking": {"firewall": {"enable": True}}}},
        message="risky",
    )


def _lines(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


def _timer_alive(record: PendingChange) -> bool:
    return pid_alive(record.trial_pid)


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
    # The trial holds the rebuild lock through its window: even a runner that does not check
    # for a pending change cannot rebuild in between.
    with pytest.raises(RebuildBusyError, match="trial change 'risky change'"):
        controller.runner.run("boot")
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
        with pytest.raises(HyperconsoleError, match="a trial change is pending: first"):
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


def test_trial_argv():
    command = trial_argv(Path("/etc/nixos"), "abc123def456", Path("/var/lib/hc"))
    assert command[1:3] == ["-m", "hyperconsole.cli.revert_timer"] and "abc123def456" in command


def test_trial_and_rebuilds_run_in_transient_units_under_systemd(setup, script, tmp_path, monkeypatch):
    store, controller, calls, _, _ = setup
    units = tmp_path / "units.log"
    # A stand-in systemd-run: records the unit and starts the command detached, as systemd would.
    script("systemd-run", f"""\
        for a; do case "$a" in --unit=*) echo "${{a#--unit=}}" >> {units};; esac; done
        while [ "$1" != "--" ]; do shift; done; shift
        setsid "$@" </dev/null >/dev/null 2>&1 &
        """)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    controller.use_systemd = controller.runner.use_systemd = True
    outcome = controller.apply(_risky_change(store), timeout=60, description="risky")
    assert outcome.rebuild.ok and outcome.pending.unit == f"hyperconsole-trial-{outcome.pending.change_id}"
    assert controller.confirm().ok and _lines(calls) == ["test", "switch"]
    # The trial's own steps run inside the trial's unit, its watchdog in one of its own; a plain
    # rebuild gets a unit of its own.
    assert _lines(units) == [f"hyperconsole-watchdog-{outcome.pending.change_id}", outcome.pending.unit]
    assert controller.rebuild("boot").ok and _lines(calls) == ["test", "switch", "boot"]
    assert _lines(units)[2].startswith("hyperconsole-boot-")


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


def test_trial_that_cannot_start_changes_nothing(setup, nixos_dir, tmp_path):
    store, controller, calls, _, reverts = setup
    controller.runner = RebuildRunner(nixos_dir, str(tmp_path / "missing-rebuild"), state_dir=tmp_path / "state", use_systemd=False)
    before = store.read("ssh").text
    with pytest.raises(HyperconsoleError, match="cannot run"):
        controller.apply(_risky_change(store), timeout=30, description="risky")
    assert store.read("ssh").text == before and not store.read("firewall").exists
    assert controller.pending() is None and _lines(reverts) == [] and controller.last_revert() is None


def test_trial_waits_for_another_rebuild_then_gives_up_restoring_files(setup, nixos_dir, tmp_path, script, wait_for):
    store, controller, calls, _, reverts = setup
    started = tmp_path / "started"
    other = RebuildRunner(nixos_dir, str(script("long", f"touch {started}; sleep 8\n")),
                          state_dir=tmp_path / "other", use_systemd=False)
    job, proc = other.start(other.argv("switch"), "switch")
    assert wait_for(started.exists)
    before = store.read("ssh").text
    with pytest.raises(HyperconsoleError, match="another rebuild is running"):
        controller.apply(_risky_change(store), timeout=30, description="risky")
    assert store.read("ssh").text == before and controller.pending() is None
    assert _lines(calls) == [] and _lines(reverts) == []
    proc.wait(timeout=20)


TRIAL_CONSOLE = """
import sys
from pathlib import Path
from hyperconsole.nixos.rebuild import RebuildRunner
from hyperconsole.nixos.revert import ConfirmOrRevert
from hyperconsole.nixos.store import FragmentStore
nixos_dir, rebuild, revert, state = sys.argv[1:5]
store = FragmentStore(nixos_dir)
runner = RebuildRunner(nixos_dir, rebuild, state_dir=Path(state), use_systemd=False)
controller = ConfirmOrRevert(store, runner, revert, state_dir=Path(state), use_systemd=False,
                             current_system=Path(state) / "current-system")
change = store.prepare({"ssh": {"services": {"openssh": {"enable": False}}}}, message="m")
controller.apply(change, timeout=600, description="owner dies")
"""


def test_console_killed_during_a_quiet_trial_reverts_after_the_trial_activated(setup, nixos_dir, tmp_path, script, wait_for):
    store, _, _, _, _ = setup
    activations = tmp_path / "activations.log"
    started = tmp_path / "trial-started"
    # A quiet trial rebuild: 6 s without a line, then it activates.
    quiet = script("quiet-rebuild", f"touch {started}; sleep 6; echo trial >> {activations}\n")
    revert = script("marking-revert", f"echo revert >> {activations}\n")
    before = store.read("ssh").text
    console = subprocess.Popen([sys.executable, "-c", TRIAL_CONSOLE, str(nixos_dir), str(quiet), str(revert),
                                str(tmp_path / "state")])
    assert wait_for(started.exists, timeout=15)
    time.sleep(1.5)  # well inside the quiet rebuild
    os.kill(console.pid, signal.SIGKILL)
    console.wait()
    record = load_pending(store.dir)
    assert record.state == "testing" and pid_alive(record.trial_pid)
    assert wait_for(lambda: load_pending(store.dir) is None, timeout=30)
    # The trial activated first; the revert's activation is the last one; the files are back.
    assert _lines(activations) == ["trial", "revert"]
    assert store.read("ssh").text == before
    last = json.loads((store.dir / ".last-revert.json").read_text())
    assert last["reason"] == "the console exited during the trial rebuild" and last["status"] == "succeeded"
    assert wait_for(lambda: not pid_alive(record.trial_pid), timeout=5)


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


def test_revert_says_when_the_running_system_is_not_the_trials(tmp_path, wait_for):
    """On the demo system: the trial activates, then something else is activated by hand (the
    demo's own switch, as someone running nixos-rebuild directly would); the revert says so."""
    from hyperconsole.config import Config
    from hyperconsole.demo import nixos as demo
    from hyperconsole.demo.rebuild import main as demo_rebuild
    from hyperconsole.nixos.revert import controller_for

    system = tmp_path / "demo-system"
    config = demo.demo_config(Config(nixos_dir=str(tmp_path / "demo-nixos")), system)
    controller = controller_for(config, demo=True)
    store = controller.store
    change = store.prepare({"ssh": {"services": {"openssh": {"enable": False}}}}, message="m")
    outcome = controller.apply(change, timeout=600, description="sshd off")
    assert outcome.rebuild.ok, outcome.rebuild.lines
    trial_system = os.path.realpath(system / "current-system")
    assert outcome.pending.activated_system == f"{trial_system} (profile system-1-link)"
    # The same files switched by hand: the same system, made generation 2.
    assert demo_rebuild(["--state", str(system), str(store.nixos_dir), "switch"]) == 0
    reverted = controller.revert_now(reason="reverted by the operator")
    assert reverted.warning.startswith(
        f"the running system is not the one the trial activated (trial: {trial_system} (profile system-1-link), "
        f"now: {trial_system} (profile system-2-link))")
    assert controller.last_revert()["warning"] == reverted.warning
    assert not store.read("ssh").exists and controller.pending() is None


def test_revert_after_an_undisturbed_trial_has_no_warning(setup):
    store, controller, *_ = setup
    outcome = controller.apply(_risky_change(store), timeout=600, description="risky")
    assert outcome.pending.activated_system == ""  # the stand-in rebuild keeps no running-system link
    reverted = controller.revert_now(reason="reverted by the operator")
    assert reverted.warning == "" and reverted.result.ok and reverted.reason == "reverted by the operator"


@pytest.mark.parametrize("finish", ["revert", "confirm"])
def test_a_killed_trial_process_is_finished_by_the_next_console(setup, wait_for, finish):
    store, controller, calls, _, reverts = setup
    outcome = controller.apply(_risky_change(store), timeout=600, description="risky")
    os.kill(outcome.pending.trial_pid, signal.SIGKILL)
    assert wait_for(lambda: not pid_alive(outcome.pending.trial_pid), timeout=5)
    assert "its trial process has ended without finishing it" in controller.pending().describe()
    if finish == "revert":
        reverted = controller.revert_now(reason="reverted by the operator")
        assert reverted.result.ok and _lines(reverts) == ["revert"]
        assert not store.read("firewall").exists
    else:
        assert controller.confirm().ok and _lines(calls) == ["test", "switch"]
        assert store.read("firewall").exists and _lines(reverts) == []
    assert controller.pending() is None


def test_a_killed_trial_process_is_reverted_by_its_watchdog_with_no_console(setup, wait_for):
    store, controller, calls, _, reverts = setup
    before = store.read("ssh").text
    outcome = controller.apply(_risky_change(store), timeout=2, description="risky")
    assert outcome.pending.state == "armed"
    os.kill(outcome.pending.trial_pid, signal.SIGKILL)
    # No console from here on (nothing of the controller is called): only the files are looked at.
    assert wait_for(lambda: not (store.dir / PENDING_NAME).exists(), timeout=30)
    assert not pid_alive(outcome.pending.trial_pid)
    assert _lines(reverts) == ["revert"] and _lines(calls) == ["test"]
    assert store.read("ssh").text == before and not store.read("firewall").exists
    last = json.loads((store.dir / LAST_REVERT_NAME).read_text())
    assert last["change_id"] == outcome.pending.change_id and last["status"] == "succeeded"
    assert last["reason"] == "the trial process ended unexpectedly"


def test_the_watchdog_leaves_a_confirmed_change_alone(setup, tmp_path, wait_for):
    store, controller, calls, _, reverts = setup
    outcome = controller.apply(_risky_change(store), timeout=2, description="risky")
    assert controller.confirm().ok and controller.pending() is None
    log = tmp_path / "state" / "rebuilds" / f"revert-watchdog-{outcome.pending.change_id}.log"
    assert wait_for(lambda: "no longer pending; nothing to do" in log.read_text(), timeout=30)
    assert _lines(reverts) == [] and _lines(calls) == ["test", "switch"]
    assert store.read("firewall").exists and controller.last_revert() is None
