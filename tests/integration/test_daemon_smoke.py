"""Smoke test of the integration tier itself: real libvirtd + QEMU (TCG) started by the fixture."""

from __future__ import annotations

import time

import pytest

libvirt = pytest.importorskip("libvirt")

pytestmark = pytest.mark.integration


def _cpu_time(conn, dom) -> int:
    stats = conn.domainListGetStats([dom], libvirt.VIR_DOMAIN_STATS_CPU_TOTAL)
    return stats[0][1].get("cpu.time", 0)


def test_tiny_vm_runs_reports_cpu_and_survives_libvirtd_restart(libvirtd, tiny_vm):
    name = tiny_vm()
    conn = libvirtd.connect()
    try:
        dom = conn.lookupByName(name)
        dom.create()
        assert dom.state()[0] == libvirt.VIR_DOMAIN_RUNNING
        qemu_pid_file = f"/run/libvirt/qemu/{name}.pid"
        qemu_pid = int(open(qemu_pid_file).read().strip())

        time.sleep(1.0)
        stats = {d.name(): s for d, s in conn.getAllDomainStats(
            libvirt.VIR_DOMAIN_STATS_STATE | libvirt.VIR_DOMAIN_STATS_CPU_TOTAL)}
        assert stats[name]["state.state"] == libvirt.VIR_DOMAIN_RUNNING
        assert stats[name]["cpu.time"] > 0
        before = stats[name]["cpu.time"]
    finally:
        conn.close()

    libvirtd.kill()
    with pytest.raises(libvirt.libvirtError):
        libvirt.open(libvirtd.uri)
    libvirtd.start()

    conn = libvirtd.connect()
    try:
        dom = conn.lookupByName(name)
        assert dom.state()[0] == libvirt.VIR_DOMAIN_RUNNING
        assert int(open(qemu_pid_file).read().strip()) == qemu_pid  # same QEMU, reattached
        assert _cpu_time(conn, dom) >= before
    finally:
        conn.close()


def test_domains_are_isolated_per_test(libvirtd, tiny_vm):
    """The previous test's domain was removed by tiny_vm's teardown; only ours exists."""
    name = tiny_vm(start=True)
    conn = libvirtd.connect()
    try:
        names = [d.name() for d in conn.listAllDomains() if d.name().startswith("hcit-")]
        assert names == [name]
        assert conn.lookupByName(name).isActive()
    finally:
        conn.close()
