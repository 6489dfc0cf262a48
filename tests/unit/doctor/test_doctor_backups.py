"""backups.last-run on real run records (written by the runner's Records) and a real backups.nix
(written by the job model through the FragmentStore); periods from the real systemd-analyze."""

from __future__ import annotations

import time

import pytest

from hyperconsole.backup import jobs as J
from hyperconsole.backup import runner
from hyperconsole.doctor import Status
from hyperconsole.nixos.store import FragmentStore
from tests.unit.doctor.conftest import run_one

DAY = 86400.0


def _jobs(tmp_path, *jobs: J.Job) -> None:
    (tmp_path / "nixos").mkdir(exist_ok=True)
    store = FragmentStore(tmp_path / "nixos")
    store.commit(J.prepare(store, list(jobs), "backup jobs"))


def _job(name: str, schedule: str = "daily") -> J.Job:
    return J.Job(name=name, repository="/srv/restic", password_file="/etc/hc/pw", schedule=schedule)


def _run(records: runner.Records, job: str, age_days: float, ok: bool = True) -> None:
    end = time.time() - age_days * DAY
    vm = runner.VmResult("web-1", ok, "ab" * 32 if ok else "", error="" if ok else "restic: wrong password")
    records.add_run(runner.RunResult(job, end - 60, end, (vm,)))


@pytest.fixture
def records(tmp_path):
    return runner.Records(tmp_path / "records")


def test_no_jobs_is_a_skip_with_the_reason(make_ctx, tmp_path, records):
    result = run_one(make_ctx(backup_records=records.dir), "backups.last-run")
    assert result.status is Status.SKIP and "no NixOS configuration directory" in result.why
    (tmp_path / "nixos").mkdir()
    result = run_one(make_ctx(backup_records=records.dir), "backups.last-run")
    assert result.status is Status.SKIP and "no backup jobs" in result.why


@pytest.mark.parametrize("runs, status, words", [
    ([(0.5, True)], Status.PASS, "ran on schedule"),
    ([(1.5, True)], Status.PASS, "ran on schedule"),       # within twice the daily period
    ([(3.0, True)], Status.WARN, "last good run was 3.0 days ago"),
    ([(3.0, True), (0.2, False)], Status.WARN, "the last run failed"),
    ([(8.0, True)], Status.FAIL, "last good run was 8.0 days ago"),
    ([(8.0, True), (0.2, False)], Status.FAIL, "8.0 days ago"),  # failing for longer than 7 periods
    ([(0.2, False)], Status.FAIL, "never succeeded"),
    ([], Status.FAIL, "never ran"),
])
def test_age_of_the_last_good_run_against_a_daily_schedule(make_ctx, tmp_path, records, runs, status, words):
    _jobs(tmp_path, _job("nightly"))
    for age, ok in runs:
        _run(records, "nightly", age, ok)
    result = run_one(make_ctx(backup_records=records.dir), "backups.last-run")
    assert result.status is status, result.why
    assert words in result.why


def test_a_weekly_job_is_judged_by_its_week_and_the_worst_job_leads(make_ctx, tmp_path, records):
    _jobs(tmp_path, _job("weekly", "Sun 03:00"), _job("nightly"))
    _run(records, "weekly", 10.0)   # 10 days: within 2 weeks
    _run(records, "nightly", 0.3)
    result = run_one(make_ctx(backup_records=records.dir), "backups.last-run")
    assert result.status is Status.PASS, result.why
    assert "every 7.0 days" in result.detail
    _run(records, "nightly", 2.5)
    result = run_one(make_ctx(backup_records=records.dir), "backups.last-run")
    assert result.status is Status.WARN and result.why.startswith("nightly:")
    assert "PASS weekly" in result.detail and "WARN nightly" in result.detail


def test_the_shared_records_are_read_by_default(make_ctx, tmp_path):
    _jobs(tmp_path, _job("nightly"))
    _run(runner.Records(runner.SHARED_DIR), "nightly", 0.1)  # what the root unit writes
    assert run_one(make_ctx(), "backups.last-run").status is Status.PASS


@pytest.mark.parametrize("schedule, seconds", [
    ("daily", DAY), ("weekly", 7 * DAY), ("Sun 03:00", 7 * DAY), ("*-*-* 02:30", DAY), ("hourly", 3600.0),
    ("Mon..Fri 02:00", 3 * DAY),  # the weekend gap is the longest
])
def test_schedule_periods(schedule, seconds):
    import subprocess

    out = subprocess.run(["systemd-analyze", "calendar", f"--iterations={J.ITERATIONS}", "--", schedule],
                         capture_output=True, text=True, timeout=10).stdout
    assert J.period(schedule, out) == pytest.approx(seconds, abs=3600)  # a DST change moves it an hour
    if schedule != "Mon..Fri 02:00":
        assert J.period(schedule) == pytest.approx(seconds, abs=3600)  # without systemd-analyze
