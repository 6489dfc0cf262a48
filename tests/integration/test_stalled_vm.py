"""Integration (tier 3): one VM whose QEMU is stopped (SIGSTOP) does not freeze the VM list.

Its monitor stops answering, so a stats call that reaches it hangs. The sampler's tick ends at
its deadline: the stopped VM keeps its last row marked stale, the call that hangs is named, and
another VM paused meanwhile through the API (as `virsh suspend` does) shows as paused.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

libvirt = pytest.importorskip("libvirt")

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]


def _qemu_pid(name: str) -> int:
    return int(Path(f"/run/libvirt/qemu/{name}.pid").read_text().strip())


def _by_name(tick) -> dict:
    return {d.name: d for d in tick.domains.values()}


def test_a_stopped_qemu_leaves_the_other_vms_updating(libvirtd, tiny_vm):
    from hyperconsole.virt.connection import ConnectionManager
    from hyperconsole.virt.models import DomainState
    from hyperconsole.virt.sampler import DomainSampler

    stopped, other = tiny_vm(start=True), tiny_vm(start=True)
    pid = _qemu_pid(stopped)
    manager = ConnectionManager(libvirtd.uri)
    os.kill(pid, signal.SIGSTOP)
    try:
        conn = libvirtd.connect()
        try:
            conn.lookupByName(other).suspend()
        finally:
            conn.close()
        manager.connect()  # a fresh connection, as the console opens one
        sampler = DomainSampler(manager, deadline=2.0, call_deadline=1.0)
        ticks = []
        for _ in range(8):  # a bounded number of ticks, each ending within its budget
            ticks.append(sampler.tick())
            rows = _by_name(ticks[-1])
            if other in rows and rows[other].state is DomainState.PAUSED and rows[other].stale_seconds is None:
                break
        rows = _by_name(ticks[-1])
        print("\n" + "\n".join(f"tick {i}: " + ", ".join(f"{d.name} {d.state.label} stale={d.stale_seconds}"
                                                        for d in t.domains.values() if d.name in (stopped, other))
                                 + f" stuck={[str(s) for s in t.stuck]}" for i, t in enumerate(ticks)))
        assert rows[other].state is DomainState.PAUSED and rows[other].stale_seconds is None
        assert rows[stopped].stale_seconds is not None
        assert any(s.call.startswith(("getAllDomainStats", "domainListGetStats")) for s in ticks[-1].stuck)
    finally:
        os.kill(pid, signal.SIGCONT)
    try:
        # Resumed: the abandoned calls return (their results discarded) and the row is live again.
        for _ in range(20):
            tick = sampler.tick()
            if not tick.stuck and _by_name(tick)[stopped].stale_seconds is None:
                break
            time.sleep(0.5)
        assert not tick.stuck and _by_name(tick)[stopped].stale_seconds is None
        assert _by_name(tick)[stopped].state is DomainState.RUNNING
    finally:
        manager.close()
