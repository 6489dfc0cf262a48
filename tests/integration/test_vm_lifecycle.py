"""Integration (tier 3): lifecycle, stats and snapshots through OUR code on a real libvirtd + QEMU.

Every action goes through the virt lifecycle, snapshot and resource modules with a ConnectionManager; state is read back
through DomainSampler (what the VM table shows) and checked against libvirt directly.
"""

from __future__ import annotations

import subprocess
import threading
import time

import pytest

libvirt = pytest.importorskip("libvirt")

from hyperconsole.errors import ValidationError  # noqa: E402
from hyperconsole.virt import lifecycle, resources, snapshots  # noqa: E402
from hyperconsole.virt import errors  # noqa: E402
from hyperconsole.virt.connection import ConnectionManager, LifecycleEvent  # noqa: E402
from hyperconsole.virt.models import ConnectionState, DomainState  # noqa: E402
from hyperconsole.virt.sampler import DomainSampler  # noqa: E402

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def wait_until(predicate, timeout: float, step: float = 0.05):
    """Poll ``predicate`` until it returns something truthy or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(step)


class Recorder:
    """Thread-safe listener (events arrive on libvirt's event thread)."""

    def __init__(self):
        self._lock = threading.Lock()
        self.events: list[object] = []

    def __call__(self, event: object) -> None:
        with self._lock:
            self.events.append(event)

    def lifecycle(self, name: str, event: int) -> list[LifecycleEvent]:
        with self._lock:
            return [e for e in self.events
                    if isinstance(e, LifecycleEvent) and e.name == name and e.event == event]


@pytest.fixture
def manager(libvirtd):
    rec = Recorder()
    mgr = ConnectionManager(libvirtd.uri, listener=rec)
    mgr.recorder = rec
    mgr.connect()
    assert mgr.state is ConnectionState.ACTIVE
    yield mgr
    mgr.close()


def row(sampler: DomainSampler, name: str):
    found = [d for d in sampler.tick().domains.values() if d.name == name]
    assert len(found) == 1, f"{name} not in the sampler's table"
    return found[0]


def wait_state(sampler: DomainSampler, name: str, state: DomainState, timeout: float = 10.0):
    got = wait_until(lambda: (r := row(sampler, name)).state is state and r, timeout, 0.1)
    assert got, f"{name}: sampler shows {row(sampler, name).state.name}, expected {state.name}"
    return got


# ------------------------------------------------------------------------------ lifecycle


def test_start_pause_resume_force_off_with_events(libvirtd, tiny_vm, manager):
    name = tiny_vm()
    sampler = DomainSampler(manager)
    assert row(sampler, name).state is DomainState.SHUTOFF
    rec = manager.recorder

    lifecycle.start(manager, name)
    wait_state(sampler, name, DomainState.RUNNING)
    started = wait_until(lambda: rec.lifecycle(name, libvirt.VIR_DOMAIN_EVENT_STARTED), 10.0)
    assert started, "no STARTED lifecycle event reached the ConnectionManager listener"
    uuid = row(sampler, name).uuid
    assert started[0].uuid == uuid
    assert started[0].detail == libvirt.VIR_DOMAIN_EVENT_STARTED_BOOTED

    lifecycle.pause(manager, name)
    wait_state(sampler, name, DomainState.PAUSED)
    assert wait_until(lambda: rec.lifecycle(name, libvirt.VIR_DOMAIN_EVENT_SUSPENDED), 10.0)

    lifecycle.resume(manager, uuid)  # by UUID this time
    wait_state(sampler, name, DomainState.RUNNING)
    assert wait_until(lambda: rec.lifecycle(name, libvirt.VIR_DOMAIN_EVENT_RESUMED), 10.0)

    lifecycle.force_off(manager, name)
    wait_state(sampler, name, DomainState.SHUTOFF)
    stopped = wait_until(lambda: rec.lifecycle(name, libvirt.VIR_DOMAIN_EVENT_STOPPED), 10.0)
    assert stopped and stopped[0].detail == libvirt.VIR_DOMAIN_EVENT_STOPPED_DESTROYED

    conn = libvirtd.connect()
    try:
        assert conn.lookupByName(name).state()[0] == libvirt.VIR_DOMAIN_SHUTOFF
    finally:
        conn.close()


def test_errors_are_one_line_virt_errors(tiny_vm, manager):
    name = tiny_vm()
    with pytest.raises(errors.VirtError) as err:
        lifecycle.pause(manager, name)  # not running
    assert "\n" not in str(err.value) and name in str(err.value)
    with pytest.raises(errors.VirtError, match="no VM"):
        lifecycle.start(manager, "hcit-does-not-exist")


# ------------------------------------------------------------------------------ stats


def test_sampler_cpu_time_and_constant_calls_per_tick(libvirtd, tiny_vm, manager, libvirt_calls):
    names = [tiny_vm(start=True), tiny_vm(start=True)]
    sampler = DomainSampler(manager)
    sampler.tick()  # also fetches each domain's static facts once
    time.sleep(1.0)
    libvirt_calls.clear()
    second = sampler.tick()
    assert sampler.bulk_stats is True, "qemu driver has getAllDomainStats: bulk path expected"
    for name in names:
        info = [d for d in second.domains.values() if d.name == name][0]
        assert info.state is DomainState.RUNNING
        assert info.cpu_time_ns and info.cpu_time_ns > 0
        assert isinstance(info.cpu_percent, float) and info.cpu_percent > 0, info
        assert info.vcpus == 1 and info.memory_kib == 96 * 1024
    assert libvirt_calls.remote == {"virConnect.getAllDomainStats": 1}, "steady-state tick with 2 VMs"
    assert second.diff.added == frozenset() and second.diff.removed == frozenset()

    third = tiny_vm(start=True)
    libvirt_calls.clear()
    grow = sampler.tick()
    grow_calls = sum(libvirt_calls.remote.values())
    assert any(d.name == third for d in grow.domains.values())
    assert len(grow.diff.added) == 1
    libvirt_calls.clear()
    steady = sampler.tick()
    assert libvirt_calls.remote == {"virConnect.getAllDomainStats": 1}, "steady-state tick with 3 VMs"
    print(f"\ncalls/tick: new VM {grow_calls}, 3 VMs 1; tick {steady.seconds * 1000:.1f} ms")


def test_a_vm_scrolled_into_view_has_fresh_figures_within_one_refresh(libvirtd, tiny_vm, manager, libvirt_calls):
    """The rows on screen are sampled every tick (the others a few at a time); a VM that comes into
    view gets a new sample (its CPU % over the time since its last one) on the very next tick."""
    names = [tiny_vm(start=True) for _ in range(3)]
    sampler = DomainSampler(manager)
    uuid = {d.name: d.uuid for d in sampler.tick().domains.values()}

    def asked() -> set[str]:
        (call, args), = libvirt_calls.made
        assert call == "virConnect.domainListGetStats"
        return {dom.name() for dom in args[0]}

    sampler.set_interest([uuid[names[0]]], "name")
    time.sleep(0.5)
    first = sampler.tick()
    time.sleep(0.5)
    libvirt_calls.clear()
    second = sampler.tick()
    assert names[0] in asked() and len(asked()) <= 2  # on screen, and a slice of one of the others
    assert second.domains[uuid[names[0]]].cpu_time_ns > first.domains[uuid[names[0]]].cpu_time_ns

    time.sleep(0.5)
    sampler.set_interest([uuid[names[1]], uuid[names[2]]], "name")
    libvirt_calls.clear()
    third = sampler.tick()
    assert set(names[1:]) <= asked()
    for name in names[1:]:
        now, before = third.domains[uuid[name]], second.domains[uuid[name]]
        assert now.cpu_time_ns > before.cpu_time_ns and now.stale_seconds is None
        assert isinstance(now.cpu_percent, float) and now.cpu_percent > 0
        assert now.disk_read_bps is not None  # its virtio disk: a rate, if only 0 B/s
        assert now.net_rx_bps is None  # no NIC: no net rate rather than 0


# ------------------------------------------------------------------------------ snapshots


def _qemu_img_snapshots(path: str) -> str:
    """`qemu-img snapshot -l` output: internal snapshots live inside the qcow2 file."""
    return subprocess.run(["qemu-img", "snapshot", "-U", "-l", path],
                          capture_output=True, text=True, timeout=30, check=True).stdout


def _disk_path(details) -> str:
    disks = [d for d in details.disks if d.device == "disk"]
    assert len(disks) == 1, details.disks
    return disks[0].source


def test_snapshot_of_shut_off_vm_create_list_revert_delete(libvirtd, tiny_vm, manager):
    name = tiny_vm()
    path = _disk_path(lifecycle.get_details(manager, name))
    snap = snapshots.create_snapshot(manager, name, "base", "clean install, do not delete")
    assert snap.name == "base" and snap.state == "shutoff" and snap.current
    assert "base" in _qemu_img_snapshots(path), "expected an internal qcow2 snapshot"

    listed = snapshots.list_snapshots(manager, name)
    assert [(s.name, s.description) for s in listed] == [("base", "clean install, do not delete")]
    assert lifecycle.get_details(manager, name).snapshots[0].description == "clean install, do not delete"
    with pytest.raises(ValidationError):
        snapshots.create_snapshot(manager, name, "base")  # name taken: refused before any call

    # Revert to a shut-off snapshot stops the running VM: the observable effect of the revert.
    sampler = DomainSampler(manager)
    lifecycle.start(manager, name)
    wait_state(sampler, name, DomainState.RUNNING)
    snapshots.revert_snapshot(manager, name, "base")
    wait_state(sampler, name, DomainState.SHUTOFF)

    snapshots.delete_snapshot(manager, name, "base")
    assert snapshots.list_snapshots(manager, name) == ()
    assert "base" not in _qemu_img_snapshots(path)
    with pytest.raises(ValidationError):
        snapshots.revert_snapshot(manager, name, "base")


def test_snapshot_of_running_vm_keeps_memory_and_reverts_to_running(libvirtd, tiny_vm, manager):
    name = tiny_vm(start=True)
    sampler = DomainSampler(manager)
    wait_state(sampler, name, DomainState.RUNNING)
    t0 = time.monotonic()
    snap = snapshots.create_snapshot(manager, name, "live", "taken while running")
    took = time.monotonic() - t0
    assert snap.state == "running"
    assert row(sampler, name).state is DomainState.RUNNING  # QEMU resumes after the snapshot

    lifecycle.force_off(manager, name)
    wait_state(sampler, name, DomainState.SHUTOFF)
    snapshots.revert_snapshot(manager, name, "live")  # memory state included: comes back running
    wait_state(sampler, name, DomainState.RUNNING)
    lifecycle.force_off(manager, name)
    snapshots.delete_snapshot(manager, name, "live")
    assert snapshots.list_snapshots(manager, name) == ()
    print(f"\nrunning snapshot took {took:.2f}s")


# ------------------------------------------------------------------------------ resources


def test_edit_resources_of_shut_off_vm_changes_inactive_xml(libvirtd, tiny_vm, manager):
    name = tiny_vm()
    result = resources.edit_resources(manager, name, vcpus=2, memory_mib=128)
    changes = {c.what: c for c in result.changes}
    assert set(changes) == {"vcpus", "memory"}
    assert (changes["vcpus"].old, changes["vcpus"].new, changes["vcpus"].live) == (1, 2, False)
    assert (changes["memory"].old, changes["memory"].new, changes["memory"].live) == (96, 128, False)
    assert "at next boot" in result.summary()
    assert result.xml_diff

    conn = libvirtd.connect()
    try:
        dom = conn.lookupByName(name)
        _state, max_mem, _mem, vcpus, _cpu = dom.info()
        assert vcpus == 2 and max_mem == 128 * 1024
        xml = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
        assert ">2</vcpu>" in xml
    finally:
        conn.close()

    sampler = DomainSampler(manager)
    info = row(sampler, name)
    assert (info.vcpus, info.memory_kib) == (2, 128 * 1024)

    # the new size is what the VM boots with
    lifecycle.start(manager, name)
    info = wait_state(sampler, name, DomainState.RUNNING)
    assert info.vcpus == 2
    assert resources.edit_resources(manager, name, vcpus=2, memory_mib=128).changes == ()

    with pytest.raises(ValidationError):
        resources.edit_resources(manager, name, vcpus=0, memory_mib=128)
    lifecycle.force_off(manager, name)
