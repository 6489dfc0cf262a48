"""Checks of the backups: every job's last good run against its schedule, from the run records
the backup units write (the shared records dir; see backup.runner)."""

from __future__ import annotations

import time
from pathlib import Path

from hyperconsole.doctor.model import SEVERITY, Check, Context, Outcome, Status, fail, ok, skip, warn
from hyperconsole.errors import HyperconsoleError

WARN_PERIODS = 2  # the last good run is older than this many periods of the schedule: WARN
FAIL_PERIODS = 7  # … than this many: FAIL


def _period(ctx: Context, schedule: str) -> float:
    from hyperconsole.backup import jobs

    analyzed = ""
    if ctx.which("systemd-analyze"):
        done = ctx.command(["systemd-analyze", "calendar", f"--iterations={jobs.ITERATIONS}", "--", schedule])
        analyzed = done.stdout if done.returncode == 0 else ""
    return jobs.period(schedule, analyzed)


def _ago(seconds: float) -> str:
    return f"{seconds / 86400:.1f} days" if seconds >= 86400 else f"{seconds / 3600:.1f} h"


def _judge(job, last: dict | None, period: float, now: float) -> Outcome:
    good = (last or {}).get("last_good") or ((last or {}).get("finished") if (last or {}).get("ok") else None)
    every = f"(schedule {job.schedule}: every {_ago(period)})"
    if good is None:
        why = "never ran" if last is None else f"never succeeded; the last run failed: {last.get('summary', '')}"
        return fail(f"{job.name}: {why}", f"`hyperconsole backup run {job.name}` shows the error")
    age = now - good
    if age > FAIL_PERIODS * period:
        return fail(f"{job.name}: the last good run was {_ago(age)} ago {every}",
                    f"check the timer: `systemctl list-timers {job.unit}.timer`")
    if not last.get("ok"):
        return warn(f"{job.name}: the last run failed ({last.get('summary', '')}); the last good one was {_ago(age)} ago",
                    f"`journalctl -u {job.unit}.service` says why")
    if age > WARN_PERIODS * period:
        return warn(f"{job.name}: the last good run was {_ago(age)} ago {every}",
                    f"check the timer: `systemctl list-timers {job.unit}.timer`")
    return ok(f"{job.name}: last good run {_ago(age)} ago {every}")


def last_run(ctx: Context) -> Outcome:
    from hyperconsole.backup import jobs as jobs_mod
    from hyperconsole.backup import runner
    from hyperconsole.nixos.store import FragmentStore

    if not Path(ctx.config.nixos_dir).is_dir():
        return skip(f"no NixOS configuration directory at {ctx.config.nixos_dir}")
    try:
        jobs = jobs_mod.read_jobs(FragmentStore(ctx.config.nixos_dir))
    except HyperconsoleError as exc:
        return fail(f"the backup jobs cannot be read: {exc}", exc.hint or "")
    if not jobs:
        return skip("no backup jobs in backups.nix", "`hyperconsole backup job add` or pane 5 adds one")
    records = runner.Records(ctx.backup_records)
    try:
        outcomes = [_judge(job, records.last_run(job.name), _period(ctx, job.schedule), time.time()) for job in jobs]
    except HyperconsoleError as exc:
        return warn(str(exc), exc.hint or "")
    worst = max(outcomes, key=lambda o: SEVERITY[o.status])
    detail = "\n".join(f"{o.status.value.upper()} {o.why}" for o in outcomes)
    if worst.status is Status.PASS:
        return ok(f"{len(jobs)} backup job(s) ran on schedule", detail=detail)
    bad = sum(o.status is not Status.PASS for o in outcomes)
    return Outcome(worst.status, worst.why + (f" (and {bad - 1} more)" if bad > 1 else ""), worst.hint, detail=detail)


CHECKS = (
    Check("backups.last-run", "every backup job's last good run against its schedule", last_run, timeout=20.0),
)
