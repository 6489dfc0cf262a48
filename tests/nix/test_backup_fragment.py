"""backups.nix parses and evaluates with the real Nix, reads back to the same jobs, and every value
matches the type NixOS declares for its option path."""

from __future__ import annotations

import json

import pytest

from hyperconsole.backup import jobs as J
from hyperconsole.nixos.render import parse, render_fragment
from hyperconsole.nixos.store import FragmentStore

# Declared types (nixpkgs nixos/lib/systemd-unit-options.nix and nixos/modules/system/etc/etc.nix):
# description `types.singleLineStr`; after/wants/wantedBy `listOf unitNameType`; restartIfChanged
# `types.bool`; serviceConfig and timerConfig `attrsOf unitOption` (a "systemd option": bool, int,
# string or a list of them); environment.etc.<name>.text `nullOr lines`, .mode `types.str`.
UNIT_NAME = lambda v: isinstance(v, str) and "/" not in v and v == v.strip() and v != ""  # noqa: E731
UNIT_OPTION = lambda v: isinstance(v, (bool, int, str)) or (isinstance(v, list) and all(isinstance(i, (bool, int, str)) for i in v))  # noqa: E731
DECLARED = {
    ("systemd", "services", "*", "description"): lambda v: isinstance(v, str) and "\n" not in v,
    ("systemd", "services", "*", "after"): lambda v: isinstance(v, list) and all(map(UNIT_NAME, v)),
    ("systemd", "services", "*", "wants"): lambda v: isinstance(v, list) and all(map(UNIT_NAME, v)),
    ("systemd", "services", "*", "restartIfChanged"): lambda v: isinstance(v, bool),
    ("systemd", "services", "*", "serviceConfig", "*"): UNIT_OPTION,
    ("systemd", "timers", "*", "wantedBy"): lambda v: isinstance(v, list) and all(map(UNIT_NAME, v)),
    ("systemd", "timers", "*", "timerConfig", "*"): UNIT_OPTION,
    ("environment", "etc", "*", "text"): lambda v: v is None or isinstance(v, str),
    ("environment", "etc", "*", "mode"): lambda v: isinstance(v, str),
}


def check_types(value, path=()) -> list[str]:
    for pattern, check in DECLARED.items():
        if len(pattern) == len(path) and all(p in ("*", q) for p, q in zip(pattern, path)):
            return [] if check(value) else [f"{'.'.join(path)}: wrong type {value!r}"]
    if isinstance(value, dict) and value:
        return [p for key, child in value.items() for p in check_types(child, (*path, key))]
    return [f"{'.'.join(path)}: not a declared option"]


def _job(name="nightly", **kw) -> J.Job:
    base = dict(name=name, repository="/srv/backup/restic", password_file="/etc/hyperconsole/restic.pw")
    return J.Job(**{**base, **kw})


CASES = {
    "one": [_job()],
    "restore-test": [_job(restore_test="Sun 05:00", vms=("web-*", "db"))],
    "several": [_job("a", schedule="Mon..Fri 22:00", compression="max"),
                _job("b", repository="sftp:backup@host:/srv/restic", quiesce=False,
                     retention=J.Retention(last=3, yearly=2)),
                _job("c", vms=("odd \"name\" ${x} '' \\", "*"), schedule="*-*-* 02:30")],
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_backup_fragment_evaluates_and_matches_option_types(nix, tmp_path, case):
    jobs = CASES[case]
    text = render_fragment(J.fragment_value(jobs))
    evaluated = nix.eval_text(text, tmp_path)
    assert evaluated == parse(text)
    assert check_types(evaluated) == []
    data = json.loads(evaluated["environment"]["etc"][J.ETC_NAME]["text"])
    assert [j["name"] for j in data["jobs"]] == sorted(j.name for j in jobs)
    for job in jobs:
        assert evaluated["systemd"]["services"][job.unit]["serviceConfig"]["ExecStart"].endswith(f"backup run {job.name}")
        assert evaluated["systemd"]["timers"][job.unit]["timerConfig"]["OnCalendar"] == job.schedule


def test_jobs_written_through_the_store_read_back(nix, tmp_path):
    store = FragmentStore(tmp_path)
    for job in CASES["several"]:
        store.commit(J.add(store, job))
    assert J.read_jobs(store) == sorted(CASES["several"], key=lambda j: j.name)
    nix.eval_file(store.path(J.FRAGMENT))
    store.commit(J.remove(store, "a"))
    assert [j.name for j in J.read_jobs(store)] == ["b", "c"]


def test_type_table_catches_mistakes():
    assert check_types({"systemd": {"timers": {"x": {"timerConfig": {"OnCalendar": {"a": 1}}}}}})
    assert check_types({"systemd": {"services": {"x": {"description": "two\nlines"}}}})
    assert check_types({"systemd": {"services": {"x": {"startAt": "daily"}}}})
