"""A VM row's cells from what the sampler built: a device the VM does not have shows "–"."""

from __future__ import annotations

from hyperconsole.presenters import DASH, domain_cells
from hyperconsole.virt.sampler import DomainSampler, _Counters, _Static


def test_a_vm_without_nic_or_disk_shows_a_dash_not_zero_bytes():
    sampler = DomainSampler(manager=None)  # _build needs no connection
    static = _Static("vm", 1, 1024, 1024, False, True, False)
    # What QEMU reports for a running VM with no NIC and no disk: counts of 0, no counters.
    stats = {"state.state": 1, "cpu.time": 2_000_000_000, "net.count": 0, "block.count": 0}
    sampler._counters = {"u": _Counters(10.0, 1_000_000_000, None, None, None, None)}
    info = sampler._build("u", static, stats, 12.0)
    assert info.net_rx_bps is None and info.net_tx_bps is None and info.disk_read_bps is None
    cells = domain_cells(info)
    assert cells["net"].plain == cells["disk"].plain == DASH
    assert cells["cpu"].plain.strip() == "50.0%"
    # With a NIC that moved nothing, the rate is a real zero.
    stats = {**stats, "net.count": 1, "net.0.rx.bytes": 0, "net.0.tx.bytes": 0}
    sampler._counters = {"u": _Counters(10.0, 1_000_000_000, None, None, 0, 0)}
    assert domain_cells(sampler._build("u", static, stats, 12.0))["net"].plain == "0B/s 0B/s"
