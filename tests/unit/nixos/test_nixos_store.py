"""FragmentStore: atomic writes, locking across processes, lost updates, history, diffs."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from hyperconsole.errors import HyperconsoleError, ValidationError
from hyperconsole.nixos.render import parse
from hyperconsole.nixos.store import ConflictError, FragmentStore, LockBusyError, check_fragment_name


def _commit(store: FragmentStore, name: str, value, message: str = "test change"):
    return store.commit(store.prepare({name: value}, message=message))


@pytest.mark.parametrize(
    "name", ['fire"wall', "a${x}", "two\nlines", "a/b", "../etc", "ünï", "UPPER", "", "-lead", "default", "a" * 64, "x.nix"]
)
def test_hostile_fragment_names_are_refused_before_writing(nixos_dir, name):
    store = FragmentStore(nixos_dir)
    with pytest.raises(ValidationError, match="invalid fragment name"):
        store.prepare({name: {"a": 1}}, message="m")
    assert not (nixos_dir / "hyperconsole").exists()


def test_write_creates_fragment_index_and_modes(nixos_dir):
    old_umask = os.umask(0o077)
    try:
        result = _commit(FragmentStore(nixos_dir), "firewall", {"networking": {"firewall": {"enable": True}}})
    finally:
        os.umask(old_umask)
    frag = nixos_dir / "hyperconsole" / "firewall.nix"
    assert result.written == ["firewall"]
    assert stat.S_IMODE(frag.stat().st_mode) == 0o644
    assert stat.S_IMODE((nixos_dir / "hyperconsole" / "default.nix").stat().st_mode) == 0o644
    assert parse(frag.read_text()) == {"networking": {"firewall": {"enable": True}}}
    assert "./firewall.nix" in (nixos_dir / "hyperconsole" / "default.nix").read_text()
    assert not list((nixos_dir / "hyperconsole").glob(".*.tmp"))


def test_index_lists_every_fragment_and_drops_deleted_ones(nixos_dir):
    store = FragmentStore(nixos_dir)
    _commit(store, "b-frag", {"x": 1})
    _commit(store, "a-frag", {"y": 2})
    index = (store.dir / "default.nix").read_text()
    assert index.index("./a-frag.nix") < index.index("./b-frag.nix")
    _commit(store, "a-frag", None)
    assert not (store.dir / "a-frag.nix").exists()
    assert "./a-frag.nix" not in (store.dir / "default.nix").read_text()
    assert store.names() == ["b-frag"]


def test_diff_shows_the_pending_change_and_writes_nothing(nixos_dir):
    store = FragmentStore(nixos_dir)
    _commit(store, "ssh", {"services": {"openssh": {"enable": True}}})
    change = store.prepare({"ssh": {"services": {"openssh": {"enable": False}}}}, message="m")
    diff = change.diff()
    assert "--- a/hyperconsole/ssh.nix" in diff and "+++ b/hyperconsole/ssh.nix" in diff
    assert "-      enable = true;" in diff and "+      enable = false;" in diff
    assert store.read("ssh").value() == {"services": {"openssh": {"enable": True}}}
    new = store.prepare({"new-one": {"a": 1}}, message="m").diff()
    assert "--- /dev/null" in new


def test_unchanged_value_is_an_empty_change(nixos_dir):
    store = FragmentStore(nixos_dir)
    _commit(store, "x", {"a": 1})
    change = store.prepare({"x": {"a": 1}}, message="m")
    assert change.is_empty and change.diff() == ""


def test_lost_update_is_detected(nixos_dir):
    store = FragmentStore(nixos_dir)
    _commit(store, "x", {"a": 1})
    stale = store.prepare({"x": {"a": 2}}, message="mine")
    _commit(store, "x", {"a": 3}, message="someone else")
    with pytest.raises(ConflictError, match="changed since it was read"):
        store.commit(stale)
    assert store.read("x").value() == {"a": 3}


def test_a_fragment_created_meanwhile_is_a_conflict_too(nixos_dir):
    store = FragmentStore(nixos_dir)
    stale = store.prepare({"x": {"a": 2}}, message="mine")
    _commit(store, "x", {"a": 3})
    with pytest.raises(ConflictError):
        store.commit(stale)


COUNTER_WRITER = textwrap.dedent(
    """
    import sys
    from hyperconsole.nixos.store import ConflictError, FragmentStore
    store = FragmentStore(sys.argv[1], lock_timeout=30)
    conflicts = 0
    for _ in range(int(sys.argv[2])):
        while True:
            n = store.read("counter").value()["n"]
            change = store.prepare({"counter": {"n": n + 1}}, message=f"count {n + 1}")
            try:
                store.commit(change)
                break
            except ConflictError:
                conflicts += 1
    print(conflicts)
    """
)


def test_two_processes_writing_at_once_lose_no_update(nixos_dir):
    store = FragmentStore(nixos_dir)
    _commit(store, "counter", {"n": 0})
    per_process = 15
    procs = [
        subprocess.Popen([sys.executable, "-c", COUNTER_WRITER, str(nixos_dir), str(per_process)], stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=60)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    # Every increment landed exactly once: read-modify-write never overwrote a concurrent update.
    assert store.read("counter").value() == {"n": 2 * per_process}
    assert len(store.history()) == 1 + 2 * per_process
    assert all(out.strip().isdigit() for out in outputs)


LOCK_HOLDER = textwrap.dedent(
    """
    import sys, time
    from hyperconsole.nixos.store import FragmentStore
    store = FragmentStore(sys.argv[1])
    with store.lock():
        print("locked", flush=True)
        time.sleep(float(sys.argv[2]))
    """
)


def test_second_writer_waits_for_the_lock_then_succeeds(nixos_dir):
    holder = subprocess.Popen([sys.executable, "-c", LOCK_HOLDER, str(nixos_dir), "1.0"], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    store = FragmentStore(nixos_dir, lock_timeout=10)
    started = time.monotonic()
    _commit(store, "x", {"a": 1})
    waited = time.monotonic() - started
    holder.wait(timeout=10)
    assert waited > 0.3
    assert store.read("x").value() == {"a": 1}


def test_writer_fails_clearly_when_lock_is_held_too_long(nixos_dir):
    holder = subprocess.Popen([sys.executable, "-c", LOCK_HOLDER, str(nixos_dir), "5"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        store = FragmentStore(nixos_dir, lock_timeout=0.3)
        with pytest.raises(LockBusyError, match=f"pid {holder.pid}"):
            _commit(store, "x", {"a": 1})
        assert not store.read("x").exists
    finally:
        holder.kill()
        holder.wait()


KILLED_WRITER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    import hyperconsole.nixos.store as store_mod
    marker = Path(sys.argv[2])
    def stall(src, dst, **kwargs):
        marker.write_text(str(store_mod.FragmentStore(sys.argv[1]).dir / src))
        time.sleep(60)
    store_mod.os.rename = stall
    store = store_mod.FragmentStore(sys.argv[1])
    store.commit(store.prepare({"x": {"version": "new"}}, message="m"))
    """
)


def test_writer_killed_between_temp_write_and_rename_leaves_old_file(nixos_dir, tmp_path, wait_for):
    store = FragmentStore(nixos_dir)
    _commit(store, "x", {"version": "old"})
    before = (store.dir / "x.nix").read_bytes()
    marker = tmp_path / "at-rename"
    child = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(nixos_dir), str(marker)])
    assert wait_for(marker.exists, timeout=20)
    temp = Path(marker.read_text())
    assert temp.parent == store.dir and "new" in temp.read_text()  # fully written, not yet renamed
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    assert (store.dir / "x.nix").read_bytes() == before
    assert store.read("x").value() == {"version": "old"}
    # The dead writer's lock is gone with it and its temp file is cleaned by the next writer.
    _commit(FragmentStore(nixos_dir, lock_timeout=2), "x", {"version": "newer"})
    assert not temp.exists()
    assert store.read("x").value() == {"version": "newer"}


def test_history_keeps_numbered_copies_and_prunes(nixos_dir):
    store = FragmentStore(nixos_dir, history_limit=3)
    for n in range(5):
        _commit(store, "x", {"n": n}, message=f"change {n}")
    entries = store.history()
    assert [e.ident for e in entries] == ["000005", "000004", "000003"]
    assert entries[0].message == "change 4"
    assert parse((store.history_dir / "000004" / "x.nix").read_text()) == {"n": 3}
    assert not (store.history_dir / "000002").exists()


def test_history_is_a_git_commit_in_a_git_repository(nixos_dir):
    subprocess.run(["git", "init", "-q", str(nixos_dir)], check=True)
    store = FragmentStore(nixos_dir)
    result = _commit(store, "x", {"a": 1}, message="hyperconsole: set a")
    assert result.history.startswith("git ") and not result.warnings
    log = subprocess.run(["git", "-C", str(nixos_dir), "log", "--format=%s", "--name-only"], capture_output=True, text=True, check=True).stdout
    assert "hyperconsole: set a" in log and "hyperconsole/x.nix" in log
    tracked = subprocess.run(["git", "-C", str(nixos_dir), "ls-files"], capture_output=True, text=True, check=True).stdout
    assert tracked.split() == ["hyperconsole/default.nix", "hyperconsole/x.nix"]  # no lock files
    assert not store.history_dir.exists()
    assert store.history()[0].message == "hyperconsole: set a"


def test_a_git_that_hangs_does_not_hold_the_change(nixos_dir, tmp_path, monkeypatch):
    """The real git answers `rev-parse`; a hook that never returns stands in for a hung commit."""
    subprocess.run(["git", "init", "-q", str(nixos_dir)], check=True)
    hook = nixos_dir / ".git" / "hooks" / "pre-commit"
    hook.write_text("#!/bin/sh\nexec sleep 60\n")
    hook.chmod(0o755)
    monkeypatch.setattr("hyperconsole.nixos.store.GIT_TIMEOUT", 1.0)
    started = time.monotonic()
    result = _commit(FragmentStore(nixos_dir), "x", {"a": 1})
    assert time.monotonic() - started < 10
    assert result.history == "not recorded"
    assert result.warnings == ["git history not recorded: git did not finish in 1 s"]
    assert parse((nixos_dir / "hyperconsole" / "x.nix").read_text()) == {"a": 1}  # the change itself is in place


def test_missing_nixos_dir_is_a_clear_error(tmp_path):
    store = FragmentStore(tmp_path / "nope")
    with pytest.raises(HyperconsoleError, match="does not exist"):
        _commit(store, "x", {"a": 1})


UNPRIVILEGED_WRITER = textwrap.dedent(
    """
    import os, sys
    from hyperconsole.errors import HyperconsoleError
    from hyperconsole.nixos.store import FragmentStore
    store = FragmentStore(sys.argv[1])
    change = store.prepare({"x": {"a": 2}}, message="m")
    os.setgid(65534); os.setuid(65534)  # after imports: the venv may not be readable by nobody
    try:
        store.commit(change)
    except HyperconsoleError as exc:
        print(exc)
        sys.exit(3)
    """
)


def test_unwritable_nixos_dir_changes_nothing(tmp_path):
    # tmp_path is private to root; nobody needs to traverse to the NixOS dir.
    base = Path("/tmp") / f"hc-ro-{os.getpid()}-{time.monotonic_ns()}"
    base.mkdir(mode=0o755)
    store = FragmentStore(base)
    try:
        _commit(store, "x", {"a": 1})
        os.chmod(store.dir, 0o555)
        if os.geteuid() == 0:
            done = subprocess.run([sys.executable, "-c", UNPRIVILEGED_WRITER, str(base)], capture_output=True, text=True)
            assert done.returncode == 3, done.stderr
            assert "not writable" in done.stdout
        else:
            with pytest.raises(HyperconsoleError, match="not writable"):
                _commit(FragmentStore(base), "x", {"a": 2})
        assert store.read("x").value() == {"a": 1}
        assert not list(store.dir.glob(".*.tmp"))
    finally:
        os.chmod(store.dir, 0o755)
        subprocess.run(["rm", "-rf", str(base)], check=False)


def test_check_fragment_name_accepts_plain_names():
    assert check_fragment_name("security-profile") == "security-profile"
    assert check_fragment_name("br0") == "br0"


def test_pending_json_is_not_treated_as_a_fragment(nixos_dir):
    store = FragmentStore(nixos_dir)
    _commit(store, "x", {"a": 1})
    (store.dir / ".pending-change.json").write_text(json.dumps({}))
    (store.dir / "Not-Valid.nix").write_text("{ }")
    assert store.names() == ["x"]
