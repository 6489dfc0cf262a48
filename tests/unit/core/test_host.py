from __future__ import annotations

import time

from hyperconsole.host.bridges import host_bridges
from hyperconsole.host.metrics import HostSampler
from hyperconsole.host.session import ssh_server_address, tunnel_host


def test_ssh_server_address_from_ssh_connection():
    env = {"SSH_CONNECTION": "203.0.113.9 51234 192.0.2.10 22"}
    assert ssh_server_address(env) == "192.0.2.10"
    assert tunnel_host("<host>", env) == "192.0.2.10"
    assert tunnel_host("admin@hv1", env) == "admin@hv1"
    assert ssh_server_address({"SSH_CONNECTION": "garbage"}) is None


def test_host_sampler_rates_need_two_samples():
    sampler = HostSampler()
    first = sampler.sample()
    assert first.net_rx_bps is None and first.memory_total > 0 and 0 <= first.memory_percent <= 100
    time.sleep(0.05)
    second = sampler.sample()
    assert second.net_rx_bps is not None and second.net_rx_bps >= 0
    assert second.disks and all(d.total > 0 for d in second.disks)


def test_host_bridges_reads_sysfs_layout(tmp_path):
    (tmp_path / "br0" / "bridge").mkdir(parents=True)
    (tmp_path / "eth0").mkdir()
    assert host_bridges(tmp_path) == ["br0"]
    assert host_bridges(tmp_path / "missing") == []
