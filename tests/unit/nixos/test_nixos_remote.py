"""Host changes on another machine: `nixos-rebuild --target-host` and the revert armed on the target.

Real detached trial processes (as in test_nixos_revert) with two stand-ins that record what they
were asked, in one log, in order: a rebuild command, and an ssh that runs the remote command with
`sh -c` (as a remote shell would) except systemd-run/systemctl, which it only records (no systemd
here). A file `link-down` makes the ssh fail as an unreachable host does (exit 255).
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest

from hyperconsole.nixos.rebuild import RebuildRunner
from hyperconsole.nixos.remote import SSH_OPTIONS, TargetHost
from hyperconsole.nixos.revert import ConfirmOrRevert
from hyperconsole.nixos.store import FragmentStore
from hyperconsole.errors import ValidationError

DEST = "root@alpha.example"


@pytest.fixture
def remote(nixos_dir, tmp_path, script):
    events = tmp_path / "events.log"
    link_down = tmp_path / "link-down"
    recorder = f"""python3 -c 'import json,sys; print(json.dumps(sys.argv[1:]))' "$0" "$@" >> {events}\n"""
    rebuild = script("nixos-rebuild-stand-in", recorder + f"""\
for last; do :; done
echo "activating $last on the target"
[ "$last" = test ] && [ -e {tmp_path}/cut-link-on-test ] && touch {link_down}
exit 0
""")
    ssh = script("ssh-stand-in", recorder + f"""\
if [ -e {link_down} ]; then echo "ssh: connect to host alpha.example port 22: No route to host" >&2; exit 255; fi
for last; do :; done
case "$last" in systemd-run*|systemctl*|"sudo -n systemd-run"*|"sudo -n systemctl"*) exit 0;; esac
exec sh -c "$last"
""")
    reverts = tmp_path / "reverts.log"
    revert_cmd = script("revert-stand-in", f'echo "re-activating the profile"; echo revert >> {reverts}\n')
    store = FragmentStore(nixos_dir)
    store.commit(store.prepare({"ssh": {"services": {"openssh": {"enable": True}}}}, message="base"))
    target = TargetHost(DEST, ssh_command=f"{ssh} -p 2222")
    runner = RebuildRunner(nixos_dir, str(rebuild), state_dir=tmp_path / "state", use_systemd=False, target=target)
    controller = ConfirmOrRevert(store, runner, str(revert_cmd), state_dir=tmp_path / "state", use_systemd=False)

    def log() -> list[tuple[str, list[str]]]:
        lines = [json.loads(line) for line in events.read_text().splitlines()] if events.exists() else []
        return [(Path(argv[0]).name.removesuffix("-stand-in"), argv[1:]) for argv in lines]

    return store, controller, log, reverts, tmp_path


def risky(store):
    return store.prepare({"firewall": {"networking": {"firewall": {"enable": True}}}}, message="risky")


def kinds(log) -> list[str]:
    """Each call as one word: the rebuild's action, or what ran over ssh."""
    out = []
    for who, argv in log:
        if who == "nixos-rebuild":
            out.append(argv[-1])
        else:
            remote = shlex.split(argv[-1])
            out.append({"systemd-run": "arm", "systemctl": "disarm"}.get(remote[0], "revert"))
    return out


def test_rebuild_argv_pushes_to_the_target(nixos_dir):
    target = TargetHost(DEST, use_remote_sudo=True, ssh_command="ssh -i /k/id")
    runner = RebuildRunner(nixos_dir, "nixos-rebuild --fast", target=target, hostname="alpha", use_systemd=False)
    assert runner.argv("test") == ["env", f"NIX_SSHOPTS={shlex.join(['-i', '/k/id', *SSH_OPTIONS])}", "nixos-rebuild",
                                   "--fast", "--target-host", DEST, "--use-remote-sudo", "test"]
    (nixos_dir / "flake.nix").write_text("{ }")
    assert runner.argv("switch")[-6:] == ["--target-host", DEST, "--use-remote-sudo",
                                          "--flake", f"{nixos_dir}#alpha", "switch"]
    assert target.over_ssh(["switch-to-configuration", "it's"]) == [
        "ssh", "-i", "/k/id", *SSH_OPTIONS, "--", DEST, "sudo -n switch-to-configuration 'it'\"'\"'s'"]
    with pytest.raises(ValidationError):
        TargetHost("-oProxyCommand=evil")


def test_unconfirmed_remote_change_is_reverted_over_ssh_and_its_timers_stopped(remote, wait_for):
    store, controller, log, reverts, _ = remote
    outcome = controller.apply(risky(store), timeout=1, description="firewall on")
    assert outcome.pending is not None and outcome.pending.state == "armed"
    assert kinds(log()) == ["arm", "test", "arm"]
    (_, first), (_, test), (_, second) = log()
    assert test[-3:] == ["--target-host", DEST, "test"]
    assert first[:first.index("--")] == ["-p", "2222", *SSH_OPTIONS] and first[-2] == DEST
    arm1, arm2 = shlex.split(first[-1]), shlex.split(second[-1])
    test_timeout = int(controller.test_timeout)
    assert f"--on-active={test_timeout + 1 + 15}s" in arm1 and "--on-active=16s" in arm2
    assert arm1[arm1.index("--") + 1:] == controller.revert_argv  # the timer runs the revert command there
    assert wait_for(lambda: controller.pending() is None, timeout=20)
    assert kinds(log()) == ["arm", "test", "arm", "revert", "disarm"]
    assert reverts.read_text().split() == ["revert"]
    disarm = shlex.split(log()[-1][1][-1])
    assert disarm == ["systemctl", "stop", f"hyperconsole-revert-{outcome.pending.change_id}-*.timer"]
    assert not store.read("firewall").exists
    assert controller.last_revert()["warning"] == ""


def test_confirm_stops_the_timers_before_the_switch(remote):
    store, controller, log, reverts, _ = remote
    controller.apply(risky(store), timeout=30, description="firewall on")
    result = controller.confirm()
    assert result.ok
    assert kinds(log()) == ["arm", "test", "arm", "disarm", "switch"]
    assert log()[-1][1][-3:] == ["--target-host", DEST, "switch"]
    assert not reverts.exists() and store.read("firewall").exists


def test_a_change_that_cuts_the_link_is_left_to_the_targets_timer(remote, wait_for):
    store, controller, log, reverts, tmp_path = remote
    (tmp_path / "cut-link-on-test").touch()
    outcome = controller.apply(risky(store), timeout=1, description="firewall on")
    assert outcome.pending is not None  # the trial is active on the target; the link is gone
    assert wait_for(lambda: controller.pending() is None, timeout=20)
    # arm (ok), test (cuts the link), re-arm fails, the revert over ssh fails: no disarm, the
    # target's first timer (armed before the trial) reverts it there
    assert kinds(log()) == ["arm", "test", "arm", "revert"]
    assert not reverts.exists()
    last = controller.last_revert()
    assert last["status"] == "failed"
    assert f"the revert timer on {DEST} reverts it by itself" in last["warning"]
    assert not store.read("firewall").exists  # the local checkout is restored all the same


def test_no_trial_when_the_revert_cannot_be_armed_on_the_target(remote):
    store, controller, log, reverts, tmp_path = remote
    (tmp_path / "link-down").touch()
    with pytest.raises(Exception, match=f"cannot arm the revert on {DEST}"):
        controller.apply(risky(store), timeout=30, description="firewall on")
    # nothing was activated; the timer is stopped in case the arm ran there and only its answer was lost
    assert kinds(log()) == ["arm", "disarm"]
    assert not store.read("firewall").exists and controller.pending() is None
