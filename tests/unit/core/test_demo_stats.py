"""The demo's figures: simulated for running VMs, through the sampler's own rate path."""

from __future__ import annotations

from hyperconsole.demo.stats import SimulatedStats
from hyperconsole.virt.connection import ConnectionManager
from hyperconsole.virt.models import DomainState
from hyperconsole.virt.sampler import DomainSampler
from tests.fixtures import build_host_xml, domain_xml, test_uri


def test_running_vms_get_figures_and_the_others_none(tmp_path, libvirt_calls):
    manager = ConnectionManager(test_uri(tmp_path, build_host_xml(domains=[
        domain_xml("web", "running", vcpus=2), domain_xml("db", "paused"), domain_xml("old", "shutoff")])))
    manager.connect()
    now = [100.0]
    sampler = DomainSampler(manager, clock=lambda: now[0], stats_source=SimulatedStats())
    assert sampler.simulated
    first = {d.name: d for d in sampler.tick().domains.values()}
    assert first["web"].cpu_percent is None  # a rate needs two samples
    now[0] += 2.0
    libvirt_calls.clear()
    rows = {d.name: d for d in sampler.tick().domains.values()}
    web = rows["web"]
    assert web.state is DomainState.RUNNING
    assert 0 < web.cpu_percent <= 100
    assert all(rate > 0 for rate in (web.disk_read_bps, web.disk_write_bps, web.net_rx_bps, web.net_tx_bps))
    for name in ("db", "old"):
        assert rows[name].cpu_percent is None and rows[name].net_rx_bps is None
    assert libvirt_calls.remote == {"virConnect.getAllDomainStats": 1}  # simulated, not asked for
