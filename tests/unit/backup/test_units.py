"""Who carries out "run now" / "restore test now": in-process for root, the demo and hosts without
the NixOS module; the job's root unit for an operator. Following the unit reads the real records
a run writes (here written by a thread standing in for the root unit's process)."""

from __future__ import annotations

import threading
import time

import pytest

from hyperconsole.backup import jobs as J
from hyperconsole.backup import runner, units
from hyperconsole.errors import HyperconsoleError, ValidationError

JOB = J.Job(name="nightly", repository="/srv/restic", password_file="/etc/hc/pw")


@pytest.mark.parametrize("demo, euid, installed, expected", [
    (False, 0, True, "in-process"),      # root: the timer's own path
    (True, 1000, True, "in-process"),    # the demo never starts units
    (False, 1000, False, "in-process"),  # no module: the user's own session and records
    (False, 1000, True, "unit"),         # an operator on a managed host
])
def test_the_decision(demo, euid, installed, expected):
    assert units.mode(demo=demo, euid=euid, module_installed=installed) == expected


def test_the_decision_reads_the_modules_marker(tmp_path, monkeypatch):
    monkeypatch.setenv("HYPERCONSOLE_PRIVILEGED", str(tmp_path / "privileged.json"))
    assert units.mode(demo=False, euid=1000) == "in-process"
    (tmp_path / "privileged.json").write_text('{"spool": "/var/lib/hyperconsole/requests", "group": "ops"}')
    assert units.mode(demo=False, euid=1000) == "unit"


def test_unit_names_and_the_vm_refusal():
    assert units.unit_of(JOB, "run") == "hyperconsole-backup-nightly.service"
    assert units.unit_of(JOB, "test") == "hyperconsole-restore-test-nightly.service"
    units.refuse_vm_choice(None)
    with pytest.raises(ValidationError, match="--vm needs root"):
        units.refuse_vm_choice("web-1")


class Unit:
    """systemd's view of a unit that runs `body` in a thread once started."""

    def __init__(self, body):
        self.body, self.started, self.thread = body, [], None

    def start(self, unit: str) -> None:
        self.started.append(unit)
        self.thread = threading.Thread(target=self.body)
        self.thread.start()

    def state(self, _unit: str) -> str:
        if self.thread is None:
            return "inactive"
        return "active" if self.thread.is_alive() else "inactive"


def test_following_a_run_returns_the_record_the_unit_wrote(tmp_path):
    records = runner.Records(tmp_path / "records")
    old = runner.RunResult("nightly", time.time() - 86400, time.time() - 86000, (runner.VmResult("web-1", True, "a" * 64),))
    records.add_run(old)  # yesterday's run is not this one

    def body():
        time.sleep(0.3)
        now = time.time()
        records.add_run(runner.RunResult("nightly", now, now + 1, (runner.VmResult("web-1", False, error="boom"),)))

    unit = Unit(body)
    last = units.run_by_unit(JOB, "run", records=records, state=unit.state, starter=unit.start, poll=0.05)
    assert unit.started == ["hyperconsole-backup-nightly.service"]
    assert last["ok"] is False and "web-1: boom" in last["summary"]


def test_following_a_restore_test_and_a_unit_that_records_nothing(tmp_path):
    records = runner.Records(tmp_path / "records")
    unit = Unit(lambda: records.add_test("nightly", runner.TestResult("web-1", True, "abcd1234", 3.0, 2.0, time.time())))
    tests = units.run_by_unit(JOB, "test", records=records, state=unit.state, starter=unit.start, poll=0.05)["tests"]
    assert tests["web-1"]["ok"] is True and runner.TestResult(**tests["web-1"]).seconds == 3.0
    silent = Unit(lambda: time.sleep(0.2))
    with pytest.raises(HyperconsoleError, match="ended .* without recording a result"):
        units.run_by_unit(JOB, "run", records=records, state=silent.state, starter=silent.start, poll=0.05)
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(HyperconsoleError, match="goes on as root"):
        units.run_by_unit(JOB, "run", records=records, state=silent.state, starter=silent.start, cancel=cancel)
