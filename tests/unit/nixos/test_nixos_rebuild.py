"""RebuildRunner with real executables standing in for nixos-rebuild; argv building; generations."""

from __future__ import annotations

import json
import os
import threading
import time
from datetime import datetime
from pathlib import Path

import pytest

import hyperconsole

from hyperconsole.errors import HyperconsoleError, ValidationError
from hyperconsole.nixos.rebuild import (
    Job, RebuildBusyError, RebuildRunner, diff_generations, find_generation, list_generations, rebuild_argv,
    rollback_argvs, systemd_wrap,
)


def runner_for(nixos_dir: Path, command: Path | str, tmp_path: Path) -> RebuildRunner:
    return RebuildRunner(nixos_dir, str(command), state_dir=tmp_path / "state", use_systemd=False)


def test_action_is_the_last_argument(nixos_dir):
    assert rebuild_argv("nixos-rebuild", nixos_dir, "test") == ["nixos-rebuild", "test"]
    assert rebuild_argv("/opt/my rebuild --fast", nixos_dir, "boot") == ["/opt/my", "rebuild", "--fast", "boot"]
    assert rebuild_argv("'/opt/my rebuild' -v", nixos_dir, "dry-build") == ["/opt/my rebuild", "-v", "dry-build"]


def test_flake_dir_adds_flake_reference(nixos_dir):
    (nixos_dir / "flake.nix").write_text("{ outputs = _: { }; }")
    argv = rebuild_argv("nixos-rebuild", nixos_dir, "switch", hostname="hv1")
    assert argv == ["nixos-rebuild", "--flake", f"{nixos_dir}#hv1", "switch"]
    # A command that is not nixos-rebuild is left alone: it knows its own arguments.
    assert rebuild_argv("my-rebuild", nixos_dir, "switch") == ["my-rebuild", "switch"]


def test_rollback_spelling(nixos_dir):
    assert rebuild_argv("nixos-rebuild", nixos_dir, "rollback") == ["nixos-rebuild", "switch", "--rollback"]
    assert rollback_argvs("demo-cmd", nixos_dir, 4) == [["demo-cmd", "rollback", "4"]]
    steps = rollback_argvs("nixos-rebuild", nixos_dir, 4, profiles_dir=Path("/p"))
    assert steps == [
        ["nix-env", "--profile", "/p/system", "--switch-generation", "4"],
        ["/p/system/bin/switch-to-configuration", "switch"],
    ]


@pytest.mark.parametrize("action", ["", "switch; rm -rf /", "SWITCH", "build-vm"])
def test_unknown_actions_are_refused(nixos_dir, action):
    with pytest.raises(ValidationError, match="unknown rebuild action"):
        rebuild_argv("nixos-rebuild", nixos_dir, action)


@pytest.mark.parametrize("command", ["", "   ", "'unbalanced"])
def test_bad_rebuild_command_is_refused(nixos_dir, command):
    with pytest.raises(ValidationError):
        rebuild_argv(command, nixos_dir, "test")


def test_systemd_path_builds_a_transient_unit_argv(nixos_dir, tmp_path):
    runner = RebuildRunner(nixos_dir, "nixos-rebuild", state_dir=tmp_path, use_systemd=True)
    job = Job("switch", "/s/x.log", "/s/x.json", "hyperconsole-switch-1")
    argv = runner.job_argv(job, runner.argv("switch"))
    assert argv[0] == "systemd-run" and "--collect" in argv
    assert not {"--pipe", "--wait"} & set(argv)  # the unit owns its output; the console follows the log
    assert "--unit=hyperconsole-switch-1" in argv
    wrapper = argv[argv.index("--") + 1:]
    assert wrapper[1:3] == ["-m", "hyperconsole.cli.rebuild_job"]
    assert wrapper[wrapper.index("--lock") + 1] == str(nixos_dir / "hyperconsole" / ".rebuild.lock")
    assert wrapper[wrapper.index("--") + 1:] == ["nixos-rebuild", "switch"]
    # A unit starts with systemd's environment: the console's PATH and Python path go with it.
    assert f"--setenv=PATH={os.environ['PATH']}" in argv
    python_path = next(a for a in argv if a.startswith("--setenv=PYTHONPATH=")).split("=", 2)[2].split(os.pathsep)
    assert str(Path(hyperconsole.__file__).parents[1]) in python_path
    assert systemd_wrap(["x"], "u", "d")[-2:] == ["--", "x"]


def test_output_streams_line_by_line_with_elapsed_time(nixos_dir, tmp_path, script):
    cmd = script("printing", 'echo "building $1"; sleep 0.3; echo "copying"; echo "to stderr" >&2; echo "done"\n')
    runner = runner_for(nixos_dir, cmd, tmp_path)
    seen = []
    result = runner.run("test", on_line=lambda line: seen.append((line.elapsed, line.text)))
    assert result.ok and result.returncode == 0
    assert [text for _, text in seen] == ["building test", "copying", "to stderr", "done"]
    assert seen[1][0] - seen[0][0] >= 0.25  # lines arrive as printed, not all at the end
    log = result.log_path.read_text()
    assert log.splitlines()[1:] == ["building test", "copying", "to stderr", "done"]  # the rebuild wrote it
    record = json.loads(result.log_path.with_suffix(".json").read_text())
    assert record["status"] == "succeeded" and record["action"] == "test" and record["duration"] >= 0.3
    assert runner.past_runs()[0]["log"] == str(result.log_path)


def test_failure_puts_error_lines_first(nixos_dir, tmp_path, script):
    cmd = script(
        "failing",
        'echo "evaluating"; echo "error: attribute \'foo\' missing"; for i in 1 2 3; do echo "trace $i"; done; exit 1\n',
    )
    result = runner_for(nixos_dir, cmd, tmp_path).run("switch")
    assert not result.ok and result.status == "failed" and result.returncode == 1
    assert result.error_lines == ["error: attribute 'foo' missing"]
    assert result.summary()[0] == "error: attribute 'foo' missing"
    assert "trace 3" in result.summary()


def test_hang_past_timeout_is_stopped_with_its_children(nixos_dir, tmp_path, script, wait_for):
    pidfile = tmp_path / "child.pid"
    cmd = script("hanging", f'echo "start"; sleep 60 & echo $! > {pidfile}; wait\n')
    started = time.monotonic()
    result = runner_for(nixos_dir, cmd, tmp_path).run("switch", timeout=1.0)
    assert result.status == "timed out" and not result.ok
    assert time.monotonic() - started < 10
    assert result.lines[0] == "start" and "timed out" in result.lines[-1]
    child = int(pidfile.read_text())
    assert wait_for(lambda: not Path(f"/proc/{child}").exists() or "Z" in _proc_state(child), timeout=5)


def _proc_state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2]
    except OSError:
        return "Z"


def test_cancel_event_stops_a_rebuild(nixos_dir, tmp_path, script):
    cmd = script("slow", 'echo "start"; sleep 30\n')
    cancel = threading.Event()
    threading.Timer(0.5, cancel.set).start()
    result = runner_for(nixos_dir, cmd, tmp_path).run("boot", cancel=cancel)
    assert result.status == "cancelled"


def test_one_rebuild_at_a_time(nixos_dir, tmp_path, script, wait_for):
    marker = tmp_path / "started"
    cmd = script("holding", f'touch {marker}; sleep 2\n')
    first = runner_for(nixos_dir, cmd, tmp_path)
    results = []
    worker = threading.Thread(target=lambda: results.append(first.run("switch")))
    worker.start()
    assert wait_for(marker.exists)
    # A second runner (same NixOS dir, another "session") is refused while the first runs.
    second = RebuildRunner(nixos_dir, "true", state_dir=tmp_path / "other-state", use_systemd=False)
    with pytest.raises(RebuildBusyError, match="another rebuild is running"):
        second.run("test")
    worker.join()
    assert results[0].ok
    assert second.run("test").ok


def test_missing_command_is_a_clear_error(nixos_dir, tmp_path):
    runner = runner_for(nixos_dir, tmp_path / "no-such-rebuild", tmp_path)
    with pytest.raises(HyperconsoleError, match="cannot run"):
        runner.run("test")


def test_undecodable_output_does_not_break_the_stream(nixos_dir, tmp_path, script):
    cmd = script("binary", "printf 'ok \\377\\376 bytes\\n'\n")
    result = runner_for(nixos_dir, cmd, tmp_path).run("test")
    assert result.ok and result.lines[0].startswith("ok ")


def _fake_profiles(tmp_path: Path) -> Path:
    profiles = tmp_path / "profiles"
    store = tmp_path / "store"
    profiles.mkdir()
    for n in (1, 2, 3):
        out = store / f"gen{n}"
        out.mkdir(parents=True)
        (out / "frag.nix").write_text(f"{{ n = {n}; }}\n")
        (profiles / f"system-{n}-link").symlink_to(out)
        os.utime(profiles / f"system-{n}-link", (1_700_000_000 + n * 3600,) * 2, follow_symlinks=False)
    (profiles / "system").symlink_to("system-3-link")
    (tmp_path / "booted").symlink_to(store / "gen2")
    return profiles


def test_generations_list_current_and_booted(tmp_path):
    profiles = _fake_profiles(tmp_path)
    gens = list_generations(profiles, tmp_path / "booted")
    assert [g.number for g in gens] == [1, 2, 3]
    assert [g.current for g in gens] == [False, False, True]
    assert [g.booted for g in gens] == [False, True, False]
    assert gens[0].date == datetime.fromtimestamp(1_700_003_600, tz=gens[0].date.tzinfo)
    with pytest.raises(ValidationError, match="no system generation 9"):
        find_generation(gens, 9)


def test_diff_of_non_store_generations_is_a_file_diff(tmp_path):
    gens = list_generations(_fake_profiles(tmp_path), tmp_path / "booted")
    diff = diff_generations(gens[0], gens[2])
    assert "-{ n = 1; }" in diff and "+{ n = 3; }" in diff


def test_generations_without_profiles_dir_is_a_clear_error(tmp_path):
    with pytest.raises(HyperconsoleError, match="no system profiles"):
        list_generations(tmp_path / "none", tmp_path / "booted")


def test_failing_callback_stops_the_rebuild(nixos_dir, tmp_path, script, wait_for):
    pidfile = tmp_path / "pid"
    cmd = script("chatty", f'echo $$ > {pidfile}; echo "first"; exec sleep 60\n')

    def explode(line):
        raise RuntimeError("log view went away")

    with pytest.raises(RuntimeError):
        runner_for(nixos_dir, cmd, tmp_path).run("test", on_line=explode)
    pid = int(pidfile.read_text())
    assert wait_for(lambda: _proc_state(pid) == "Z" or not Path(f"/proc/{pid}").exists(), timeout=10)
