"""Backup jobs: the model, its validation, and the `backups.nix` fragment that holds them.

A job names which VMs (names, globs such as `web-*`, or `*` for all), a restic repository (a local
path or a restic URL), a password *file* (the password itself never enters a fragment, the Nix
store, a log or a process list), a systemd OnCalendar schedule, a retention policy, compression
and whether to quiesce through the guest agent.

The fragment uses standard NixOS options only: per job a `systemd.services` + `systemd.timers`
pair (plus the restore test's service, with a timer when it is scheduled) whose ExecStart runs
`hyperconsole backup run JOB`, and every job definition as JSON data in
`environment.etc."hyperconsole/backup-jobs.json".text`. That JSON, read back from the fragment,
is the one source of the jobs for the console, the CLI and the runner.
"""

from __future__ import annotations

import fnmatch
import json
import re
import shutil
import subprocess
from datetime import datetime
from typing import Callable, Iterable, Literal

import msgspec

from hyperconsole import names, schema
from hyperconsole.errors import HyperconsoleError, ValidationError
from hyperconsole.nixos.store import ChangeSet, FragmentStore
from hyperconsole.sanitize import visible

FRAGMENT = "backups"
ETC_NAME = "hyperconsole/backup-jobs.json"
UNIT_PREFIX = "hyperconsole-backup-"
TEST_UNIT_PREFIX = "hyperconsole-restore-test-"
# systemd's own search path for a bare ExecStart name does not include NixOS's profile.
HYPERCONSOLE_BIN = "/run/current-system/sw/bin/hyperconsole"
RANDOMIZED_DELAY = "10min"
MAX_KEEP = 100_000
COMPRESSION = ("auto", "max", "off")

_JOB_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,39}\Z")
# Restic repository URL schemes (the backends restic 0.14 knows).
_URL = re.compile(r"(local|sftp|rest|s3|b2|azure|gs|swift|rclone):\S+\Z")
_GLOB_CHARS = frozenset("*?[")


class Retention(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    last: int = 0
    daily: int = 0
    weekly: int = 0
    monthly: int = 0
    yearly: int = 0

    def flags(self) -> list[str]:
        """`restic forget` flags for the rules that keep anything."""
        return [f"--keep-{rule}={count}" for rule, count in self.rules() if count]

    def rules(self) -> list[tuple[str, int]]:
        return [(rule, getattr(self, rule)) for rule in self.__struct_fields__]

    def describe(self) -> str:
        return " ".join(f"{rule[0]}{count}" for rule, count in self.rules() if count) or "keep all"


class Job(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    name: str
    repository: str
    password_file: str
    vms: tuple[str, ...] = ("*",)
    schedule: str = "daily"
    retention: Retention = Retention(daily=7, weekly=4, monthly=6)
    compression: Literal["auto", "max", "off"] = "auto"
    quiesce: bool = True
    restore_test: str | None = None  # an OnCalendar schedule for the automated restore test

    @property
    def unit(self) -> str:
        return UNIT_PREFIX + self.name

    @property
    def test_unit(self) -> str:
        return TEST_UNIT_PREFIX + self.name

    def selects(self, vm: str) -> bool:
        return any(fnmatch.fnmatchcase(vm, pattern) for pattern in self.vms)

    def select(self, vms: Iterable[str]) -> list[str]:
        """The VMs of `vms` this job backs up, in order; a plain name that no VM has is an error."""
        vms = list(vms)
        missing = [p for p in self.vms if not _GLOB_CHARS & set(p) and p not in vms]
        if missing:
            raise ValidationError(f"job {self.name}: no VM named {', '.join(repr(m) for m in missing)}")
        return [vm for vm in vms if self.selects(vm)]


# -- validation -------------------------------------------------------------------------------------


def job_name(name: object) -> str:
    if not isinstance(name, str) or not _JOB_NAME.match(name):
        raise ValidationError(f"invalid job name {str(name)[:50]!r}",
                              hint="1-40 lower-case letters, digits and '-', starting with a letter or digit")
    return name


def repository(text: object) -> str:
    """A local absolute path, or a restic repository URL (sftp:, rest:, s3: …)."""
    if not isinstance(text, str) or not text:
        raise ValidationError("repository is empty")
    if text.startswith("/"):
        return names.absolute_path(text, "repository path")
    if not _URL.match(text) or visible(text) != text:
        raise ValidationError(f"repository {text[:60]!r} is neither an absolute path nor a restic URL",
                              hint="e.g. /srv/backup/restic or sftp:backup@host:/srv/restic")
    return text


def vm_pattern(text: object) -> str:
    """A VM name or a glob over VM names (`web-*`, `*` for every VM)."""
    return names.object_name(text, "VM name or pattern")


_SHORTHANDS = frozenset({"minutely", "hourly", "daily", "weekly", "monthly", "yearly", "annually",
                         "quarterly", "semiannually"})
_DOW = r"(mon|tue|wed|thu|fri|sat|sun)[a-z]*"
_DOW_PART = re.compile(rf"{_DOW}((\.\.|-){_DOW})?(,{_DOW}((\.\.|-){_DOW})?)*\Z", re.I)
_FIELD = r"(\*|\d{{1,{w}}}(\.\.\d{{1,{w}}})?)(/\d{{1,{w}}})?(,\d{{1,{w}}}(\.\.\d{{1,{w}}})?(/\d{{1,{w}}})?)*"
_DATE_PART = re.compile(rf"({_FIELD.format(w=4)}-)?{_FIELD.format(w=2)}-{_FIELD.format(w=2)}\Z")
_TIME_PART = re.compile(rf"{_FIELD.format(w=2)}:{_FIELD.format(w=2)}(:{_FIELD.format(w=2)})?\Z")


def _parse_calendar(text: str) -> bool:
    """The common OnCalendar forms, for hosts without systemd-analyze: a shorthand, or
    `[weekdays] [[YYYY-]MM-DD] [HH:MM[:SS]]` with `*`, lists, ranges and `/` repetition."""
    words = text.split()
    if len(words) == 1 and words[0].lower() in _SHORTHANDS:
        return True
    if words and words[-1] in ("UTC",):
        words = words[:-1]
    if words and _DOW_PART.match(words[0]):
        words = words[1:]
    if words and _DATE_PART.match(words[0]):
        words = words[1:]
    if words and _TIME_PART.match(words[0]):
        words = words[1:]
    return not words and bool(text.strip())


def calendar(text: object, what: str = "schedule") -> str:
    """A systemd OnCalendar expression, checked by `systemd-analyze calendar` where it exists."""
    if not isinstance(text, str) or not text.strip():
        raise ValidationError(f"{what} is empty", hint="e.g. daily, 'Sun 03:00', '*-*-* 02:30'")
    if len(text) > 64 or visible(text) != text:
        raise ValidationError(f"{what} must be one line of at most 64 printable characters")
    analyze = shutil.which("systemd-analyze")
    if analyze:
        try:
            done = subprocess.run([analyze, "calendar", "--iterations=1", "--", text], capture_output=True,
                                  text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            done = None
        if done is not None:
            if done.returncode != 0:
                raise ValidationError(f"{what} {text!r} is not a systemd calendar expression",
                                      hint="e.g. daily, 'Sun 03:00', '*-*-* 02:30'")
            return text
    if not _parse_calendar(text):
        raise ValidationError(f"{what} {text!r} is not a systemd calendar expression",
                              hint="e.g. daily, 'Sun 03:00', '*-*-* 02:30'")
    return text


def next_elapse(schedule: str) -> str:
    """When `schedule` next fires, as systemd says (`systemd-analyze calendar`), or '' if unknown."""
    analyze = shutil.which("systemd-analyze")
    if not analyze:
        return ""
    try:
        done = subprocess.run([analyze, "calendar", "--iterations=1", "--", schedule], capture_output=True,
                              text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return ""
    for line in done.stdout.splitlines():
        key, _, value = line.strip().partition(": ")
        if key == "Next elapse":
            return value.strip()
    return ""


ITERATIONS = 5
_ELAPSE = re.compile(r"(?:Next elapse|Iter(?:ation|\.) #\d+): +\w+ (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)")
_PERIODS = {"minutely": 60, "hourly": 3600, "daily": 86400, "weekly": 7 * 86400, "monthly": 31 * 86400,
            "quarterly": 92 * 86400, "semiannually": 183 * 86400, "yearly": 366 * 86400, "annually": 366 * 86400}


def period(schedule: str, analyzed: str = "") -> float:
    """The longest gap (seconds) between the schedule's next firings: from `analyzed`, the output
    of `systemd-analyze calendar --iterations=5 SCHEDULE`, where there is one; else from the
    shorthand (`weekly` …) or the form (a weekday: weekly, else daily)."""
    times = [datetime.strptime(t, "%Y-%m-%d %H:%M:%S").timestamp() for t in _ELAPSE.findall(analyzed)]
    gaps = [b - a for a, b in zip(times, times[1:]) if b > a]
    if gaps:
        return max(gaps)
    word = schedule.strip().lower()
    if word in _PERIODS:
        return float(_PERIODS[word])
    return 7 * 86400.0 if schedule.split() and _DOW_PART.match(schedule.split()[0]) else 86400.0


def _vms(job: Job) -> None:
    if not job.vms:
        raise ValidationError(f"job {job.name}: no VMs selected", hint="give names, a glob such as web-*, or *")
    for pattern in job.vms:
        vm_pattern(pattern)


def _retention(job: Job) -> None:
    for rule, count in job.retention.rules():
        if not 0 <= count <= MAX_KEEP:
            raise ValidationError(f"keep-{rule} must be between 0 and {MAX_KEEP}")
    if not any(count for _, count in job.retention.rules()):
        raise ValidationError(f"job {job.name}: the retention keeps nothing",
                              hint="set at least one of keep-last/daily/weekly/monthly/yearly")


def checks(job: Job) -> list[tuple[str, Callable[[], object]]]:
    """Every check of a job, each with the field it is about (the setup wizard names the key)."""
    return [
        ("name", lambda: job_name(job.name)),
        ("repository", lambda: repository(job.repository)),
        ("password_file", lambda: names.absolute_path(job.password_file, "password file")),
        ("vms", lambda: _vms(job)),
        ("schedule", lambda: calendar(job.schedule)),
        ("restore_test", lambda: job.restore_test is None or calendar(job.restore_test, "restore-test schedule")),
        ("retention", lambda: _retention(job)),
        ("compression", lambda: job.compression in COMPRESSION or _raise(
            ValidationError(f"compression must be one of {', '.join(COMPRESSION)}"))),
    ]


def _raise(exc: Exception) -> None:
    raise exc


def validate(job: Job) -> Job:
    """Every field checked; raises ValidationError with one line for the first problem."""
    for _field, check in checks(job):
        check()
    return job


# -- the fragment -----------------------------------------------------------------------------------


def _unit_pair(unit: str, description: str, command: str, schedule: str) -> tuple[dict, dict]:
    service = {
        "description": description,
        "after": ["libvirtd.service"],
        "wants": ["libvirtd.service"],
        "restartIfChanged": False,
        "serviceConfig": {"Type": "oneshot", "ExecStart": command},
    }
    timer = {
        "wantedBy": ["timers.target"],
        "timerConfig": {"OnCalendar": schedule, "Persistent": True, "RandomizedDelaySec": RANDOMIZED_DELAY},
    }
    return service, timer


def fragment_value(jobs: Iterable[Job]) -> dict | None:
    """The backups.nix attrset for `jobs` (None: no jobs, so no fragment)."""
    jobs = sorted(jobs, key=lambda j: j.name)
    if not jobs:
        return None
    services: dict[str, dict] = {}
    timers: dict[str, dict] = {}
    for job in jobs:
        # Both services always exist (an operator's "run now" / "restore test now" starts them);
        # the restore test has a timer only when it is scheduled.
        pairs = [(job.unit, f"hyperconsole backup job {job.name}", f"{HYPERCONSOLE_BIN} backup run {job.name}",
                  job.schedule),
                 (job.test_unit, f"hyperconsole restore test of backup job {job.name}",
                  f"{HYPERCONSOLE_BIN} backup test-restore {job.name}", job.restore_test)]
        for unit, description, command, schedule in pairs:
            services[unit], timer = _unit_pair(unit, description, command, schedule or "")
            if schedule:
                timers[unit] = timer
    data = json.dumps({"jobs": [msgspec.to_builtins(j) for j in jobs]}, indent=1, sort_keys=True) + "\n"
    return {
        "systemd": {"services": services, "timers": timers},
        "environment": {"etc": {ETC_NAME: {"text": data, "mode": "0644"}}},
    }


class _File(msgspec.Struct, forbid_unknown_fields=True):
    jobs: list[Job]


def read_jobs(store: FragmentStore) -> list[Job]:
    """The jobs in backups.nix (none when it does not exist), each validated."""
    fragment = store.read(FRAGMENT)
    value = fragment.value()
    if value is None:
        return []
    try:
        text = value["environment"]["etc"][ETC_NAME]["text"]
        data = json.loads(text)
    except (KeyError, TypeError, ValueError) as exc:
        raise HyperconsoleError(f"{fragment.path}: the job list cannot be read ({exc})",
                                hint="restore it from the history or remove the file") from exc
    jobs = schema.convert(data, _File, fragment.path, "$.jobs-json").jobs
    for job in jobs:
        validate(job)
    return jobs


def find(jobs: Iterable[Job], name: str) -> Job:
    for job in jobs:
        if job.name == name:
            return job
    raise ValidationError(f"no backup job named {name!r}", hint="`hyperconsole backup job list` shows them")


def prepare(store: FragmentStore, jobs: list[Job], message: str) -> ChangeSet:
    seen: set[str] = set()
    for job in jobs:
        validate(job)
        if job.name in seen:
            raise ValidationError(f"backup job {job.name!r} is defined twice")
        seen.add(job.name)
    return store.prepare({FRAGMENT: fragment_value(jobs)}, message=f"hyperconsole: {message}")


def add(store: FragmentStore, job: Job) -> ChangeSet:
    jobs = read_jobs(store)
    if any(j.name == job.name for j in jobs):
        raise ValidationError(f"a backup job named {job.name!r} already exists", hint="use `backup job edit`")
    return prepare(store, [*jobs, validate(job)], f"add backup job {job.name}")


def replace(store: FragmentStore, job: Job) -> ChangeSet:
    jobs = read_jobs(store)
    find(jobs, job.name)
    return prepare(store, [validate(job) if j.name == job.name else j for j in jobs], f"edit backup job {job.name}")


def remove(store: FragmentStore, name: str) -> ChangeSet:
    jobs = read_jobs(store)
    find(jobs, name)
    return prepare(store, [j for j in jobs if j.name != name], f"remove backup job {name}")
