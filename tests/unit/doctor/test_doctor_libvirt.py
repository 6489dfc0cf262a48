"""libvirt checks against the libvirt test driver (one host file per test), host bridges in a real
network namespace (a bridge without carrier, one with a live port), and the safe fixes applied
through the same virt calls as the panes."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid

import pytest

from hyperconsole.config import Config
from hyperconsole.doctor.model import Status
from hyperconsole.virt import lifecycle, networks, pools
from hyperconsole.virt.connection import ConnectionManager
from tests.fixtures import build_host_xml, domain_xml, network_xml, pool_xml, test_uri
from tests.unit.doctor.conftest import run_one


@pytest.fixture
def host(tmp_path):
    managers = []

    def open_host(xml: str, *, readonly: bool = False) -> ConnectionManager:
        manager = ConnectionManager(test_uri(tmp_path, xml, f"host{len(managers)}.xml"), readonly=readonly)
        manager.connect()
        managers.append(manager)
        return manager

    yield open_host
    for manager in managers:
        manager.close()


def _ctx(make_ctx, manager, tmp_path, **attrs):
    return make_ctx(Config(connections={"default": manager.uri}, nixos_dir=str(tmp_path / "nixos")),
                    manager=manager, **attrs)


def test_connection_read_write_and_versions(host, make_ctx, tmp_path):
    result = run_one(_ctx(make_ctx, host(build_host_xml()), tmp_path), "libvirt.connection")
    assert result.status is Status.PASS and "read-write" in result.why and result.why.startswith("libvirt ")


def test_connection_read_only_says_why(host, make_ctx, tmp_path):
    manager = host(build_host_xml(), readonly=True)
    result = run_one(_ctx(make_ctx, manager, tmp_path), "libvirt.connection")
    assert result.status is Status.PASS and "read-only (--readonly)" in result.why


def test_connection_that_cannot_open_is_one_line(make_ctx, tmp_path):
    ctx = make_ctx(Config(connections={"default": f"test://{tmp_path}/missing.xml"}))
    result = run_one(ctx, "libvirt.connection")
    assert result.status is Status.FAIL and "cannot connect" in result.why
    assert result.hint == "virtualisation.libvirtd.enable = true;"


def test_default_network_inactive_with_a_vm_on_it_is_fixed_by_starting_it(host, make_ctx, tmp_path):
    manager = host(build_host_xml(domains=[domain_xml("web", "shutoff", nics=["default"])],
                                  networks=[network_xml("default", ip="192.168.122.1")]))
    networks.stop_network(manager, "default")
    ctx = _ctx(make_ctx, manager, tmp_path)
    result = run_one(ctx, "libvirt.default-network")
    assert result.status is Status.FAIL and result.why == "network default is not active: VMs on it cannot start (web)"
    assert result.fix is not None and "libvirt network default" in result.fix.touches
    assert result.fix.apply(manager, ctx.config) == "network default started"
    assert run_one(ctx, "libvirt.default-network").status is Status.PASS


def test_no_fix_offered_on_a_read_only_connection(host, make_ctx, tmp_path):
    xml = build_host_xml(networks=[network_xml("default", ip="192.168.122.1")])
    writer = host(xml)
    networks.stop_network(writer, "default")
    result = run_one(_ctx(make_ctx, writer, tmp_path), "libvirt.default-network")
    assert result.status is Status.WARN and result.fix is not None  # no VM on it: a warning
    writer.readonly = True
    assert run_one(_ctx(make_ctx, writer, tmp_path), "libvirt.default-network").fix is None


def test_inactive_pools_are_started_by_the_fix(host, make_ctx, tmp_path):
    manager = host(build_host_xml(pools=[pool_xml("default", "/var/lib/libvirt/images"), pool_xml("iso", "/srv/iso")]))
    pools.stop_pool(manager, "iso")
    ctx = _ctx(make_ctx, manager, tmp_path)
    result = run_one(ctx, "libvirt.pools")
    assert result.status is Status.WARN and result.why.startswith("pool not active: iso")
    result.fix.apply(manager, ctx.config)
    assert run_one(ctx, "libvirt.pools").status is Status.PASS


def test_pool_space_of_the_test_driver(host, make_ctx, tmp_path):
    manager = host(build_host_xml(pools=[pool_xml("default", "/var/lib/libvirt/images")]))
    result = run_one(_ctx(make_ctx, manager, tmp_path), "libvirt.pool-space")
    assert result.status is Status.PASS and "default:" in result.detail


def test_autostart_vm_shut_off(host, make_ctx, tmp_path):
    manager = host(build_host_xml(domains=[domain_xml("db", "shutoff"), domain_xml("web", "running")]))
    ctx = _ctx(make_ctx, manager, tmp_path)
    assert run_one(ctx, "libvirt.autostart").status is Status.PASS
    lifecycle.set_autostart(manager, "db", True)
    lifecycle.set_autostart(manager, "web", True)
    result = run_one(ctx, "libvirt.autostart")
    assert result.status is Status.WARN and result.why == "set to start with the host but shut off: db"


def _ip(ns: str, *args: str) -> None:
    subprocess.run(["ip", "-n", ns, *args], check=True, capture_output=True, text=True, timeout=10)


@pytest.fixture
def bridges_netns():
    """A namespace with bridge brdead (up, its one port's peer down: no carrier, as a bridge whose
    uplink cable is out), bridge brlive (a port whose peer is up: carrier), bridge brdown
    (administratively down) and veth eth9 (not a bridge)."""
    name = f"hc-doctor-{uuid.uuid4().hex[:8]}"
    if shutil.which("ip") is None:
        pytest.fail("iproute2 is not installed") if os.environ.get("CI") else pytest.skip("no iproute2")
    done = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True, timeout=10)
    if done.returncode != 0:
        reason = f"cannot create a network namespace: {done.stderr.strip()}"
        pytest.fail(reason) if os.environ.get("CI") else pytest.skip(reason)
    try:
        _ip(name, "link", "add", "brdead", "type", "bridge")
        _ip(name, "link", "add", "brlive", "type", "bridge")
        _ip(name, "link", "add", "brdown", "type", "bridge")
        _ip(name, "link", "add", "vport", "type", "veth", "peer", "name", "vpeer")
        _ip(name, "link", "add", "dport", "type", "veth", "peer", "name", "dpeer")
        _ip(name, "link", "add", "eth9", "type", "veth", "peer", "name", "eth9p")
        _ip(name, "link", "set", "vport", "master", "brlive")
        _ip(name, "link", "set", "dport", "master", "brdead")
        for link in ("brdead", "dport", "brlive", "vport", "vpeer"):
            _ip(name, "link", "set", link, "up")
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=10)


def test_vm_nics_on_a_bridge_without_carrier_in_a_real_netns(host, make_ctx, tmp_path, bridges_netns):
    manager = host(build_host_xml(
        domains=[domain_xml("dead", "shutoff", nics=[{"bridge": "brdead"}]),
                 domain_xml("live", "running", nics=[{"bridge": "brlive"}]),
                 domain_xml("gone", "shutoff", nics=[{"bridge": "brgone"}]),
                 domain_xml("odd", "shutoff", nics=[{"bridge": "eth9"}]),
                 domain_xml("off", "shutoff", nics=[{"bridge": "brdown"}]),
                 domain_xml("natted", "shutoff", nics=["isolated"])],
        networks=[network_xml("isolated", ip="10.9.0.1")]))
    ctx = _ctx(make_ctx, manager, tmp_path, netns=bridges_netns)
    deadline = time.monotonic() + 5  # a bridge's carrier follows its port a moment after `up`
    while time.monotonic() < deadline:
        result = run_one(ctx, "libvirt.vm-nics")
        if "live" not in result.detail:
            break
        time.sleep(0.1)
    assert result.status is Status.WARN
    assert sorted(result.detail.splitlines()) == [
        "dead: bridge brdead has no carrier (no member port is up)",
        "gone: bridge brgone does not exist on this host",
        "odd: eth9 is a veth interface, not a bridge",
        "off: bridge brdown is down",
    ]
    networks.stop_network(manager, "isolated")
    assert "natted: network isolated is not active" in run_one(ctx, "libvirt.vm-nics").detail


def test_vm_nics_all_well(host, make_ctx, tmp_path, bridges_netns):
    manager = host(build_host_xml(domains=[domain_xml("a", "shutoff", nics=["isolated"])],
                                  networks=[network_xml("isolated", ip="10.9.0.1")]))
    result = run_one(_ctx(make_ctx, manager, tmp_path, netns=bridges_netns), "libvirt.vm-nics")
    assert result.status is Status.PASS
