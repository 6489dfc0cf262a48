"""CLI subcommands: plain-text output, one-line errors, nothing changed on bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from hyperconsole import cli
from hyperconsole.cli import nixos as commands

REPO = Path(__file__).resolve().parents[3]


def run(argv, capsys):
    code = cli.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def common(nixos_dir, recording_rebuild, script):
    rebuild, _, _ = recording_rebuild
    revert = script("fake-revert", "echo reverted\n")
    return ["--nixos-dir", str(nixos_dir), "--rebuild-cmd", str(rebuild), "--revert-cmd", str(revert)]


def test_profile_list_and_show(common, capsys):
    code, out, _ = run(["profile", "list", *common], capsys)
    assert code == 0 and "headless" in out and "strict-ssh" in out
    code, out, _ = run(["profile", "show", "headless", "--toggle", "fail2ban", *common], capsys)
    assert code == 0 and "services.fail2ban" not in out and "fail2ban = {" in out
    assert "# hyperconsole-profile: headless" in out


def test_apply_without_rebuild_shows_diff_then_writes(common, nixos_dir, capsys, tmp_path):
    code, out, err = run(["profile", "apply", "management", "--no-rebuild", *common], capsys)
    assert code == 0, err
    assert out.index("+++ b/hyperconsole/security-profile.nix") < out.index("wrote security-profile.nix")
    assert (nixos_dir / "hyperconsole" / "security-profile.nix").exists()
    assert not (tmp_path / "calls.log").exists()
    code, out, _ = run(["profile", "apply", "management", "--no-rebuild", *common], capsys)
    assert code == 0 and "nothing to change" in out


@pytest.mark.parametrize("name", ['x"; rm -rf /; "', "${builtins.abort 1}", "../../etc/passwd", "ünicode", "two\nlines"])
def test_hostile_profile_names_fail_in_one_line_and_change_nothing(common, nixos_dir, capsys, name):
    code, out, err = run(["profile", "apply", name, "--no-rebuild", *common], capsys)
    assert code == 1
    assert err.startswith("error: no security profile named") and err.count("\n") == 1
    assert not (nixos_dir / "hyperconsole").exists()


def test_unknown_toggle_fails_and_changes_nothing(common, nixos_dir, capsys):
    code, _, err = run(["profile", "apply", "headless", "--toggle", "nope", *common], capsys)
    assert code == 1 and "no toggle named 'nope'" in err
    assert not (nixos_dir / "hyperconsole").exists()


@pytest.mark.parametrize("value", ["-1", "86401", "abc", "1.5"])
def test_confirm_timeout_out_of_range_is_a_usage_error(common, capsys, value):
    with pytest.raises(SystemExit) as exc:
        cli.main(["profile", "apply", "headless", "--confirm-timeout", value, *common])
    assert exc.value.code == 2


def test_rebuild_failure_prints_error_lines_first(nixos_dir, script, capsys):
    failing = script("bad-rebuild", 'echo "evaluating"; echo "error: infinite recursion encountered"; echo "tail"; exit 1\n')
    code, out, err = run(["rebuild", "switch", "--nixos-dir", str(nixos_dir), "--rebuild-cmd", str(failing)], capsys)
    assert code == 1
    assert "evaluating" in out
    assert err.splitlines()[0].startswith("error: switch failed")
    assert err.splitlines()[1].strip() == "error: infinite recursion encountered"


def test_rebuild_action_must_be_known(common):
    with pytest.raises(SystemExit) as exc:
        cli.main(["rebuild", "build-vm", *common])
    assert exc.value.code == 2


@pytest.mark.parametrize("trial", [[], ["--no-rebuild"]], ids=["on trial", "no rebuild"])
def test_missing_nixos_dir_is_one_line_and_nothing_is_created(tmp_path, capsys, recording_rebuild, trial):
    rebuild, calls, _ = recording_rebuild
    parent = tmp_path / "etc"
    parent.mkdir()
    code, _, err = run(["profile", "apply", "headless", "--yes", *trial, "--nixos-dir", str(parent / "nixos"),
                        "--rebuild-cmd", str(rebuild)], capsys)
    assert code == 1 and err == f"error: NixOS directory {parent / 'nixos'} does not exist (use --nixos-dir)\n"
    assert list(parent.iterdir()) == [] and not calls.exists()


def test_nixos_status_offers_and_adds_the_import(common, nixos_dir, capsys):
    code, out, _ = run(["nixos", "status", *common], capsys)
    assert code == 0 and "configuration.nix: does NOT import ./hyperconsole" in out and "--add-import" in out
    assert "./hyperconsole\n" not in (nixos_dir / "configuration.nix").read_text()  # never silently
    code, out, _ = run(["nixos", "status", "--add-import", *common], capsys)
    assert code == 0 and "+    ./hyperconsole" in out
    text = (nixos_dir / "configuration.nix").read_text()
    assert commands.imports_fragments(text)
    code, out, _ = run(["nixos", "status", *common], capsys)
    assert "configuration.nix: imports ./hyperconsole" in out


@pytest.mark.parametrize(
    "text, expected",
    [
        ("{ imports = [ ./hyperconsole ]; }", True),
        ("{ imports = [ ./hyperconsole/default.nix ]; }", True),
        ("{ imports = [ ./hyperconsole-old ]; }", False),
        ("{ imports = [ ../x/hyperconsole ]; }", False),
        ("# imports = [ ./hyperconsole ];\n{ }", False),
        ("/* ./hyperconsole */ { }", False),
    ],
)
def test_import_detection(text, expected):
    assert commands.imports_fragments(text) is expected


def test_add_import_without_imports_list():
    new = commands.add_import("{ config, pkgs, ... }:\n{\n  networking.hostName = \"x\";\n}\n")
    assert "imports = [ ./hyperconsole ];" in new and commands.imports_fragments(new)


def test_demo_flow_without_nix(tmp_path, capsys, monkeypatch):
    # The reader stands in for nix-instantiate when Nix is absent; tests/nix covers the real one.
    monkeypatch.setattr("shutil.which", lambda name, *a, **k: None if name == "nix-instantiate" else "/bin/" + name)
    demo_dir = tmp_path / "demo-nixos"
    from hyperconsole.demo import nixos as demo, rebuild as demo_rebuild

    demo.prepare_demo_nixos(demo_dir, tmp_path / "system")
    assert demo_rebuild.main(["--state", str(tmp_path / "system"), str(demo_dir), "switch"]) == 0
    out = capsys.readouterr().out
    assert "hyperconsole's reader" in out and "generation 2" in out
    (demo_dir / "hyperconsole" / "broken.nix").write_text("{ a = ; }")
    assert demo_rebuild.main(["--state", str(tmp_path / "system"), str(demo_dir), "test"]) == 1
    out = capsys.readouterr().out
    assert "error: broken.nix:" in out


def test_demo_config_uses_demo_commands(tmp_path):
    from hyperconsole.config import Config
    from hyperconsole.demo import nixos as demo

    config = demo.demo_config(Config(nixos_dir=str(tmp_path / "n")), tmp_path / "system")
    assert "hyperconsole.demo.rebuild" in config.rebuild_command
    assert config.revert_command.endswith(" revert")
    assert (tmp_path / "n" / "configuration.nix").exists()
    custom = demo.demo_config(Config(nixos_dir=str(tmp_path / "n"), rebuild_command="mine"), tmp_path / "system")
    assert custom.rebuild_command == "mine"


def test_registered_in_the_cli_with_its_common_options():
    parser = cli.build_parser()
    args = parser.parse_args(["rollback", "3", "--nixos-dir", "/x"])
    assert args.func is commands.cmd_rollback and args.generation == 3 and args.nixos_dir == "/x"
    args = parser.parse_args(["generations", "--diff", "1", "2"])
    assert args.diff == [1, 2]


@pytest.mark.parametrize("argv", [["nixos", "status"], ["profile", "list"], ["profile", "show", "management"],
                                  ["--help"]], ids=" ".join)
def test_a_closed_output_pipe_ends_quietly(common, argv):
    """`hyperconsole nixos status | head -1`: the reader is gone before the command writes (its
    end of a real pipe closed first), so every write meets EPIPE."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        done = subprocess.run([sys.executable, "-m", "hyperconsole", *argv, *common], stdout=write_end,
                              stderr=subprocess.PIPE, text=True, timeout=60, cwd=REPO)
    finally:
        os.close(write_end)
    assert done.returncode in (0, 141)
    assert done.stderr == ""


def test_head_reads_the_first_line_of_status(common, nixos_dir):
    done = subprocess.run(f"{sys.executable} -m hyperconsole nixos status {' '.join(common)} | head -1",
                          shell=True, capture_output=True, text=True, timeout=60, cwd=REPO)
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout == f"NixOS dir: {nixos_dir}\n"


CLI = [sys.executable, "-m", "hyperconsole"]


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGHUP])
def test_rebuild_outlives_the_cli_killed_mid_rebuild(nixos_dir, tmp_path, script, wait_for, sig):
    end = tmp_path / "rebuild-ended"
    # Prints a line every 0.2 s for about 2 s, then marks its end.
    chatty = script("chatty-rebuild", f"""\
        for i in 1 2 3 4 5 6 7 8 9 10; do echo "step $i"; sleep 0.2; done
        touch {end}
        """)
    cli_proc = subprocess.Popen(
        CLI + ["rebuild", "switch", "--nixos-dir", str(nixos_dir), "--rebuild-cmd", str(chatty)],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    assert "step 1" in cli_proc.stdout.readline().decode()
    os.kill(cli_proc.pid, sig)
    cli_proc.wait(timeout=10)
    cli_proc.stdout.close()  # the terminal is gone too: nothing reads what the CLI printed
    assert wait_for(end.exists, timeout=15)
    logs = list((tmp_path / "xdg-state" / "hyperconsole" / "rebuilds").glob("*-switch.log"))
    assert len(logs) == 1
    assert logs[0].read_text().splitlines()[1:] == [f"step {i}" for i in range(1, 11)]
    assert wait_for(lambda: json.loads(logs[0].with_suffix(".json").read_text()).get("status") == "succeeded")


def test_manual_rebuild_during_a_trial_is_refused(common, nixos_dir, tmp_path, capsys):
    code, _, err = run(["profile", "apply", "management", "--confirm-timeout", "600", "--yes", *common], capsys)
    assert code == 0, err
    try:
        for argv in (["rebuild", "switch"], ["rebuild", "boot"], ["rollback"]):
            code, out, err = run([*argv, *common], capsys)
            assert code == 1 and err.count("\n") == 1
            assert err.startswith("error: a trial change is pending: security profile management (reverts by itself in ")
            assert "`hyperconsole confirm`" in err and "`hyperconsole revert`" in err
        assert (tmp_path / "calls.log").read_text().split() == ["test"]  # nothing else ran
    finally:
        code, out, err = run(["revert", *common], capsys)
    assert code == 0 and "reverted: restored security-profile.nix" in out, err
    assert not (nixos_dir / "hyperconsole" / "security-profile.nix").exists()


def test_failed_direct_switch_restores_the_fragment(common, nixos_dir, tmp_path, capsys):
    (tmp_path / "fail-actions").write_text("switch\n")
    code, _, err = run(["profile", "apply", "management", "--no-rebuild", *common], capsys)
    fragment = nixos_dir / "hyperconsole" / "security-profile.nix"
    before = fragment.read_bytes()
    code, out, err = run(["profile", "apply", "headless", "--confirm-timeout", "0", "--yes", *common], capsys)
    assert code == 1
    assert fragment.read_bytes() == before
    assert "error: activation of switch failed" in err
    assert "the change was rolled back: the fragment files were restored\n" in err
    assert (tmp_path / "calls.log").read_text().split() == ["switch"]


def test_applying_a_profile_with_a_clear_text_password_is_refused_and_writes_nothing(common, nixos_dir, capsys,
                                                                                       tmp_path, monkeypatch):
    user_profiles = tmp_path / "xdg-config" / "hyperconsole" / "profiles"
    user_profiles.mkdir(parents=True)
    (user_profiles / "lab.yaml").write_text(
        "name: lab\nsummary: s\nnixos:\n  users:\n    users:\n      operator:\n        initialPassword: changeme\n")
    code, out, err = run(["profile", "apply", "lab", "--no-rebuild", *common], capsys)
    assert code != 0 and out == ""
    [line] = err.strip().splitlines()
    assert line == (f"error: security profile lab is refused: {user_profiles / 'lab.yaml'}: at "
                    "$.nixos.users.users.operator.initialPassword: a clear-text password is refused: the Nix store "
                    "is world-readable (set hashedPasswordFile to a file outside the store instead)")
    assert not (nixos_dir / "hyperconsole").exists()
