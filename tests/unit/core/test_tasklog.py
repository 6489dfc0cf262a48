"""The task log's store and file: entries begin and end, earlier sessions' entries come back, the
file is 0600, written whole, never through a symlink, and a stale snapshot never wins."""

from __future__ import annotations

import json
import os
import stat
import threading

import pytest

from hyperconsole.safefs import SymlinkError
from hyperconsole.tasklog import Result, Task, TaskFile, TaskLog, revert_task, revert_task_id


def test_begin_then_finish_keeps_start_and_sets_end_result_and_error():
    log = TaskLog()
    task = log.begin("start web", "web", now=100.0)
    assert (task.result, task.ended) == (Result.RUNNING, None)
    done = log.finish(task.id, "start web", error="line one\nline two", now=103.5)
    assert (done.started, done.ended, done.result, done.target) == (100.0, 103.5, Result.FAILED, "web")
    assert done.error == "line one\nline two"
    assert log.tasks == (done,)


def test_an_outcome_without_a_begun_task_is_entered_as_it_arrives():
    log = TaskLog()
    done = log.finish(None, "create vm", detail="created", now=50.0)
    assert (done.label, done.started, done.ended, done.result, done.detail) == ("create vm", 50.0, 50.0, Result.OK,
                                                                                 "created")


def test_earlier_entries_go_first_and_one_left_running_is_unknown():
    log = TaskLog()
    mine = log.begin("clone a", now=200.0)
    earlier = [Task("x1", "start b", "b", 10.0, 11.0, Result.OK),
               Task("x2", "apply firewall", "network.nix", 20.0)]
    log.add_earlier(earlier)
    assert [t.id for t in log.tasks] == ["x1", "x2", mine.id]
    assert log.get("x2").result is Result.UNKNOWN and "ended before it finished" in log.get("x2").error
    assert log.get(mine.id).result is Result.RUNNING


def test_the_oldest_finished_entries_go_first_past_the_limit():
    log = TaskLog(limit=3)
    running = log.begin("upload big.iso", now=1.0)
    for n in range(4):
        log.finish(log.begin(f"job {n}", now=2.0 + n).id, f"job {n}", now=3.0 + n)
    assert [t.label for t in log.tasks] == ["upload big.iso", "job 2", "job 3"]
    assert log.get(running.id).result is Result.RUNNING


def test_a_revert_is_one_entry_whoever_learns_it():
    summary = {"change_id": "abc", "description": "security profile headless", "reason": "not confirmed in time",
               "reverted_at": 1000.0, "restored": ["security-profile"], "status": "succeeded", "log": None}
    log = TaskLog()
    assert log.add(revert_task(summary)) and not log.add(revert_task(summary))
    task = log.get(revert_task_id("abc"))
    assert (task.label, task.target, task.result, task.detail) == (
        "revert security profile headless", "security-profile.nix", Result.OK, "not confirmed in time")
    failed = revert_task({**summary, "change_id": "def", "status": "failed", "log": "/var/log/r.log"})
    assert failed.result is Result.FAILED and "/var/log/r.log" in failed.error
    not_run = revert_task({**summary, "status": "files restored; the revert command did not run: no such file"})
    assert not_run.result is Result.FAILED and "did not run: no such file" in not_run.error
    untouched = revert_task({**summary, "status": "files restored (nothing was activated)"})
    assert untouched.result is Result.OK
    assert revert_task(None) is None and revert_task([1]) is None
    assert revert_task({"change_id": "x", "reverted_at": "soon"}) is None
    warned = revert_task({**summary, "warning": "the running system is not the one the trial activated"})
    assert warned.detail == "not confirmed in time\nthe running system is not the one the trial activated"


def test_file_round_trip_is_0600(tmp_path):
    path = tmp_path / "state" / "tasks.json"
    log = TaskLog()
    log.finish(log.begin("start web", "web").id, "start web", error="boom")
    TaskFile(path).save(log.version, log.tasks)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600 and stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700
    assert TaskFile(path).load() == list(log.tasks)
    assert [p.name for p in path.parent.iterdir()] == ["tasks.json"]  # no temp file left


def test_a_symlink_at_the_file_is_neither_read_nor_written_through(tmp_path):
    secret = tmp_path / "secret.json"
    secret.write_text(json.dumps({"format": 1, "tasks": [
        {"id": "s", "label": "planted", "target": "", "started": 1.0, "ended": 2.0, "result": "ok"}]}))
    path = tmp_path / "tasks.json"
    path.symlink_to(secret)
    before = secret.read_text()
    assert TaskFile(path).load() == []
    log = TaskLog()
    log.begin("start web")
    with pytest.raises(SymlinkError):
        TaskFile(path).save(log.version, log.tasks)
    assert secret.read_text() == before and path.is_symlink()


def test_a_symlinked_state_dir_is_not_written_into(tmp_path):
    real = tmp_path / "elsewhere"
    real.mkdir()
    (tmp_path / "state").symlink_to(real)
    log = TaskLog()
    log.begin("start web")
    with pytest.raises(SymlinkError):
        TaskFile(tmp_path / "state" / "tasks.json").save(log.version, log.tasks)
    assert list(real.iterdir()) == []


def test_a_damaged_file_costs_the_history_not_the_session(tmp_path):
    path = tmp_path / "tasks.json"
    path.write_text('{"format": 1, "tasks": [{"id": 1')
    assert TaskFile(path).load() == []


def test_an_older_snapshot_saved_late_does_not_overwrite_a_newer_one(tmp_path):
    path = tmp_path / "tasks.json"
    log = TaskLog()
    log.begin("first")
    old_version, old = log.version, log.tasks
    log.begin("second")
    file = TaskFile(path)
    file.save(log.version, log.tasks)
    file.save(old_version, old)
    assert [t.label for t in file.load()] == ["first", "second"]


def test_concurrent_saves_leave_a_whole_file(tmp_path):
    path = tmp_path / "tasks.json"
    file = TaskFile(path)
    log = TaskLog()
    for n in range(50):
        log.begin(f"job {n}")
    snapshots = [(v, log.tasks[:v]) for v in range(1, 51)]
    threads = [threading.Thread(target=file.save, args=snap) for snap in snapshots]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(file.load()) == 50

