"""Layout snapshots of every screen on the demo host (pytest-textual-snapshot).

Update after an intended layout change: ./run test tests/snapshots --snapshot-update
Host-specific values (psutil figures, hostname, tick timing, time zone) are pinned so the
pictures depend only on our code and the demo host.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from pathlib import Path

import pytest

from hyperconsole.host import interfaces
from hyperconsole.host.metrics import DiskUsage, HostSample
from hyperconsole.messages import DataChanged
from hyperconsole.virt import inventory
from scripts.scenes import FLEET_SCENES, SCENES, SETUP_SCENES, SIZE, demo_app, demo_fleet_app, settle, setup_app


class PinnedHostSampler:
    def __init__(self) -> None:
        self.calls = 0

    def sample(self) -> HostSample:
        self.calls += 1
        return HostSample(
            cpu_percent=37.5, per_cpu=(30.0, 45.0), memory_total=64 * 2**30, memory_used=22 * 2**30,
            memory_percent=34.4, swap_percent=1.0, load=(0.71, 0.64, 0.52),
            disks=(DiskUsage("/", 500 * 2**30, 210 * 2**30, 42.0),
                   DiskUsage("/var/lib/libvirt", 2000 * 2**30, 1500 * 2**30, 75.0)),
            net_rx_bps=1.5 * 2**20, net_tx_bps=300 * 2**10, disk_read_bps=4 * 2**20, disk_write_bps=2**20,
            uptime_seconds=86400.0,
        )


@pytest.fixture(autouse=True)
def _pinned_host(monkeypatch):
    # The Security pane shows the demo's scratch NixOS dir: give it the same path every run.
    state = Path("/tmp/hyperconsole-snapshot-state")
    shutil.rmtree(state, ignore_errors=True)
    monkeypatch.setenv("XDG_STATE_HOME", str(state))
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    monkeypatch.setenv("SSH_CONNECTION", "198.51.100.7 50000 192.0.2.10 22")
    # This machine's interfaces are not the layout under test: a recorded host with a bridge,
    # a bond and a VLAN is (the same data the host unit tests use).
    data = Path(__file__).resolve().parents[1] / "unit" / "host" / "data"
    links = json.loads((data / "ip-link-vlan-bond.json").read_text())
    addrs = json.loads((data / "ip-addr-vlan-bond.json").read_text())
    monkeypatch.setattr(interfaces, "read_interfaces", lambda netns=None: interfaces.parse_interfaces(links, addrs))
    monkeypatch.setattr(interfaces, "route_device", lambda dest, netns=None: None)
    monkeypatch.setattr(interfaces, "read_default_routes", lambda netns=None: [])
    real = inventory.node_info
    monkeypatch.setattr(inventory, "node_info",
                        lambda target: dataclasses.replace(real(target), hostname="hv-demo"))
    yield
    time.tzset()


@pytest.mark.parametrize("name", list(SCENES))
def test_screen_layout(name, snap_compare):
    scene = SCENES[name]

    async def run_before(pilot) -> None:
        await settle(pilot)
        await scene(pilot)
        await settle(pilot)
        app = pilot.app
        app.view.last_tick_seconds = 0.0012  # timing varies run to run; the layout must not
        app.screen.post_message(DataChanged(frozenset({"all"})))
        await pilot.pause()

    assert snap_compare(demo_app(host_sampler=PinnedHostSampler()), terminal_size=SIZE, run_before=run_before)


@pytest.mark.parametrize("name", list(FLEET_SCENES))
def test_fleet_layout(name, snap_compare):
    """Three demo hosts in one console: the VM list with its Host column, the dashboard's host rows."""
    scene = FLEET_SCENES[name]

    async def run_before(pilot) -> None:
        await settle(pilot)
        await scene(pilot)
        await settle(pilot)
        pilot.app.view.last_tick_seconds = 0.0012
        pilot.app.screen.post_message(DataChanged(frozenset({"all"})))
        await pilot.pause()

    assert snap_compare(demo_fleet_app(host_sampler=PinnedHostSampler()), terminal_size=SIZE, run_before=run_before)


@pytest.mark.parametrize("name", list(SETUP_SCENES))
def test_setup_wizard_layout(name, snap_compare, tmp_path):
    size, scene = SETUP_SCENES[name]

    async def run_before(pilot) -> None:
        await scene(pilot)
        await settle(pilot)

    assert snap_compare(setup_app(tmp_path), terminal_size=size, run_before=run_before)
