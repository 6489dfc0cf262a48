"""The job model: every bad field refused with one line, nothing written; calendar checks."""

from __future__ import annotations

import shutil

import pytest

from hyperconsole.backup import jobs as J
from hyperconsole.errors import ValidationError
from hyperconsole.nixos.store import FragmentStore


def _job(**kw) -> J.Job:
    base = dict(name="nightly", repository="/srv/r", password_file="/etc/pw")
    return J.Job(**{**base, **kw})


@pytest.mark.parametrize("kw, words", [
    ({"name": "Bad Name"}, "invalid job name"),
    ({"name": "-x"}, "invalid job name"),
    ({"repository": "relative/path"}, "neither an absolute path"),
    ({"repository": "ftp://x"}, "neither an absolute path"),
    ({"repository": "/srv/../etc"}, "'..'"),
    ({"password_file": "pw"}, "absolute path"),
    ({"vms": ()}, "no VMs selected"),
    ({"vms": ("a/b",)}, "'/'"),
    ({"schedule": "every tuesday"}, "not a systemd calendar"),
    ({"schedule": ""}, "empty"),
    ({"restore_test": "bogus"}, "restore-test schedule"),
    ({"retention": J.Retention()}, "keeps nothing"),
    ({"retention": J.Retention(daily=-1)}, "keep-daily"),
])
def test_bad_fields_are_refused_in_one_line(kw, words):
    with pytest.raises(ValidationError) as info:
        J.validate(_job(**kw))
    assert words in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("text", ["daily", "weekly", "Sun 03:00", "Mon..Fri 22:00", "*-*-* 02:30",
                                  "2024-01-01 00:00:00", "*:0/15", "Sat,Sun 01:00:00"])
def test_common_calendar_forms(text):
    assert J.calendar(text) == text
    assert J._parse_calendar(text)  # the fallback parser agrees where systemd-analyze is absent


@pytest.mark.parametrize("text", ["bogus", "Sunday-ish", "25:00:00x", "daily weekly", "03:00 Sun"])
def test_fallback_parser_refuses(text):
    assert not J._parse_calendar(text)


def test_systemd_analyze_gives_the_next_run():
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed")
    assert J.next_elapse("daily")


def test_selection_by_names_and_globs():
    job = _job(vms=("web-*", "db"))
    assert job.select(["web-1", "db", "mail", "web-2"]) == ["web-1", "db", "web-2"]
    with pytest.raises(ValidationError, match="no VM named 'db'"):
        job.select(["web-1"])
    assert _job().select(["a", "b"]) == ["a", "b"]


def test_add_edit_remove_refusals_change_nothing(tmp_path):
    store = FragmentStore(tmp_path)
    store.commit(J.add(store, _job()))
    before = store.read(J.FRAGMENT).text
    with pytest.raises(ValidationError, match="already exists"):
        J.add(store, _job())
    with pytest.raises(ValidationError, match="no backup job named"):
        J.replace(store, _job(name="other"))
    with pytest.raises(ValidationError, match="no backup job named"):
        J.remove(store, "other")
    assert store.read(J.FRAGMENT).text == before
    store.commit(J.replace(store, _job(schedule="weekly")))
    assert J.read_jobs(store)[0].schedule == "weekly"
    store.commit(J.remove(store, "nightly"))
    assert not store.read(J.FRAGMENT).exists and J.read_jobs(store) == []
