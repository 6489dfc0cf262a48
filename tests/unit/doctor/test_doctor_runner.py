"""The runner: concurrent checks with per-check deadlines; a hung command is killed (its whole
process group) and reported as timed out; a check stuck in a call that cannot be interrupted is
reported at its deadline all the same; selection and exit codes."""

from __future__ import annotations

import dataclasses
import os
import threading
import time

import pytest

from hyperconsole import doctor
from hyperconsole.doctor import hostchecks
from hyperconsole.doctor.model import Check, Status, fail, ok, skip, warn
from hyperconsole.errors import HyperconsoleError
from tests.unit.doctor.conftest import write_command


def _alive(marker: str) -> list[int]:
    found = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    if marker.encode() in f.read():
                        found.append(int(pid))
            except OSError:
                pass
    return found


def test_a_hanging_command_is_reported_as_timed_out_within_its_deadline(make_ctx, bindir, tmp_path):
    # systemctl that never answers, and a child of it that would outlive a plain kill of the parent.
    marker = f"hc-doctor-hang-{os.getpid()}"
    write_command(bindir, "systemctl", f"sh -c 'exec -a {marker} sleep 300' &\nexec sleep 300")
    ctx = make_ctx(systemd=True)
    check = dataclasses.replace(next(c for c in doctor.CHECKS if c.id == "host.failed-units"), timeout=1.5)
    started = time.monotonic()
    (result,) = doctor.run_checks([check], ctx)
    took = time.monotonic() - started
    assert result.status is Status.FAIL and result.why.startswith("timed out"), result
    assert "systemctl" in result.why
    assert took < 1.5 + 1.0
    deadline = time.monotonic() + 3
    while _alive(marker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(marker), "the command's whole process group is killed"


def test_a_check_stuck_outside_any_command_is_reported_at_its_deadline(make_ctx):
    release = threading.Event()
    stuck = Check("test.stuck", "waits forever", lambda ctx: release.wait() and ok("late"), timeout=0.5)
    quick = Check("test.quick", "answers", lambda ctx: ok("fine"), timeout=5)
    started = time.monotonic()
    results = doctor.run_checks([stuck, quick], make_ctx())
    release.set()
    assert time.monotonic() - started < 0.5 + 1.0
    assert [r.id for r in results] == ["test.stuck", "test.quick"]  # the registry's order
    assert results[0].status is Status.FAIL and "no answer within" in results[0].why
    assert results[1].status is Status.PASS


def test_checks_run_concurrently(make_ctx):
    checks = [Check(f"test.sleep{i}", "sleeps", lambda ctx: time.sleep(0.5) or ok("slept")) for i in range(6)]
    started = time.monotonic()
    results = doctor.run_checks(checks, make_ctx())
    assert time.monotonic() - started < 1.5  # six half-second checks, not three seconds
    assert {r.status for r in results} == {Status.PASS}


def test_errors_become_results_not_tracebacks(make_ctx):
    def broken(ctx):
        raise KeyError("nope")

    def refused(ctx):
        raise HyperconsoleError("cannot read it", hint="do this")

    results = doctor.run_checks([Check("test.broken", "x", broken), Check("test.refused", "y", refused)], make_ctx())
    assert results[0].status is Status.FAIL and "KeyError" in results[0].why
    assert (results[1].status, results[1].why, results[1].hint) == (Status.FAIL, "cannot read it", "do this")


def test_checks_needing_root_are_skipped_with_the_reason(make_ctx):
    ctx = make_ctx(euid=1000)
    (result,) = doctor.run_checks([Check("test.root", "x", lambda ctx: ok("ran"), needs_root="reads host keys")], ctx)
    assert result.status is Status.SKIP and result.why == "needs root: reads host keys"


def test_exit_codes_and_summary():
    def result(status):
        return doctor.Result("a.b", "x", status, "why")

    assert doctor.exit_code([result(Status.PASS), result(Status.SKIP)]) == 0
    assert doctor.exit_code([result(Status.PASS), result(Status.WARN)]) == 1
    assert doctor.exit_code([result(Status.WARN), result(Status.FAIL)]) == 2
    assert doctor.summary([result(Status.WARN), result(Status.FAIL), result(Status.FAIL)]) == \
        {"pass": 0, "warn": 1, "fail": 2, "skip": 0}


def test_select_by_id_or_group_and_unknown_names():
    picked = doctor.select(doctor.CHECKS, ["libvirt", "host.time"])
    assert {c.id for c in picked} == {c.id for c in doctor.CHECKS if c.group == "libvirt"} | {"host.time"}
    with pytest.raises(HyperconsoleError, match="no such check: nope"):
        doctor.select(doctor.CHECKS, ["nope"])


def test_the_registry_covers_every_area_the_issue_lists():
    ids = {c.id for c in doctor.CHECKS}
    assert {"virt.cpu", "virt.kvm", "virt.vhost-net", "virt.tun", "virt.cgroups", "virt.iommu",
            "libvirt.connection", "libvirt.default-network", "libvirt.pools", "libvirt.pool-space",
            "libvirt.vm-nics", "libvirt.autostart", "host.root-space", "host.nix-space", "host.generations",
            "host.failed-units", "host.journal", "host.time", "host.hostname", "nixos.imports", "nixos.drift",
            "nixos.trial", "nixos.ssh", "nixos.firewall", "access.user"} <= ids


def test_outcome_helpers():
    assert ok("a").status is Status.PASS and warn("b").status is Status.WARN
    assert fail("c").status is Status.FAIL and skip("d").status is Status.SKIP
    assert hostchecks.space_status(4.9) is Status.FAIL
    assert hostchecks.space_status(14.9) is Status.WARN
    assert hostchecks.space_status(15.0) is Status.PASS
