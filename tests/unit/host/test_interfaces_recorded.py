"""Parsing RECORDED `ip -j -d -s link` / `ip -j addr` output of a host with a bond (802.3ad,
one slave without carrier), a bridge with RSTP on top of it, two VLANs (802.1Q on the bond,
802.1ad on a NIC), a VM tap and a WireGuard link.

Recorded rather than created because this test machine's kernel has no 8021q or bonding module,
so VLAN and bond devices cannot be made here; tests/unit/host/data/ holds the JSON (iproute2 6.1
format). Bridges and veths are read live in test_interfaces_netns.py."""

from __future__ import annotations

import json
from pathlib import Path

from hyperconsole.host import interfaces as I

DATA = Path(__file__).resolve().parent / "data"


def recorded_links() -> list[dict]:
    return json.loads((DATA / "ip-link-vlan-bond.json").read_text())


def recorded_addrs() -> list[dict]:
    return json.loads((DATA / "ip-addr-vlan-bond.json").read_text())


def by_name(host):
    return {i.name: i for i in host}


def test_kinds(recorded_host):
    kinds = {i.name: i.kind for i in recorded_host}
    assert kinds == {
        "lo": "loopback", "eno1": "physical", "eno2": "physical", "bond0": "bond", "br0": "bridge",
        "bond0.20": "vlan", "mgmt": "vlan", "vnet0": "tap", "wg0": "other",
    }
    assert by_name(recorded_host)["wg0"].link_kind == "wireguard"


def test_vlan_id_parent_and_protocol(recorded_host):
    host = by_name(recorded_host)
    assert host["bond0.20"].vlan == I.VlanInfo(20, "bond0", "802.1Q")
    assert host["mgmt"].vlan == I.VlanInfo(4094, "eno1", "802.1ad")
    assert host["br0"].vlan is None


def test_bond_mode_and_slaves(recorded_host):
    host = by_name(recorded_host)
    assert host["bond0"].bond == I.BondInfo("802.3ad", ("eno1", "eno2"))
    assert host["eno1"].master == "bond0" and host["bond0"].master == "br0"


def test_bridge_members_and_stp_without_sysfs(recorded_host):
    # No sysfs for a recorded host: members come from the links' "master", STP from linkinfo.
    br0 = by_name(recorded_host)["br0"].bridge
    assert br0.members == ("bond0", "vnet0") and br0.stp_state == 2 and br0.stp


def test_sysfs_overrides_members_stp_and_adds_speed():
    sysfs = {"br0": {"brif": ["bond0"], "stp_state": 0}, "eno1": {"speed": 25000, "carrier": True}}
    host = by_name(I.parse_interfaces(recorded_links(), recorded_addrs(), sysfs))
    assert host["br0"].bridge == I.BridgeInfo(("bond0",), 0)
    assert host["eno1"].speed_mbps == 25000 and host["eno2"].speed_mbps is None


def test_state_carrier_mtu_mac_counters(recorded_host):
    host = by_name(recorded_host)
    assert (host["eno1"].state, host["eno1"].carrier) == ("up", True)
    assert (host["eno2"].state, host["eno2"].carrier) == ("down", False)  # UP but NO-CARRIER
    assert host["mgmt"].carrier is None  # administratively down: the kernel reports no carrier
    assert host["br0"].mtu == 9000 and host["bond0.20"].mtu == 1500
    assert host["vnet0"].mac == "fe:54:00:6b:1c:02" and host["lo"].mac is None
    assert (host["eno1"].rx_bytes, host["eno1"].tx_bytes) == (918273645, 123456789)


def test_addresses(recorded_host):
    host = by_name(recorded_host)
    assert [a.cidr for a in host["br0"].addresses] == ["198.51.100.7/24", "2001:db8:7::7/64", "fe80::3eec:efff:fe10:2030/64"]
    assert host["br0"].addresses[2].scope == "link"
    assert host["bond0.20"].addresses == (I.AddressInfo("inet", "10.20.0.7", 16, "global"),)
    assert host["eno1"].addresses == ()


def test_uplink_on_bridge_includes_bond_and_its_slaves(recorded_host):
    env = {"SSH_CONNECTION": "198.51.100.50 50022 198.51.100.7 22"}
    uplinks = I.uplink_interfaces(recorded_host, environ=env, route_lookup=lambda dest: "br0")
    # vnet0 is a br0 member too: changing it cannot cut the session, but listing it is harmless
    # and keeps the rule simple (every lower device of the uplink).
    assert uplinks == ["bond0", "br0", "eno1", "eno2", "vnet0"]


def test_uplink_on_vlan_includes_parent_chain(recorded_host):
    env = {"SSH_CONNECTION": "10.20.9.9 40000 10.20.0.7 22"}
    uplinks = I.uplink_interfaces(recorded_host, environ=env, route_lookup=lambda dest: "bond0.20")
    assert {"bond0.20", "bond0", "eno1", "eno2", "br0"} <= set(uplinks)
    assert "wg0" not in uplinks and "mgmt" not in uplinks


def test_uplink_by_route_when_server_address_is_not_local(recorded_host):
    # e.g. SSH reached the host through a DNAT: the route back to the client decides.
    env = {"SSH_CONNECTION": "10.100.0.9 40000 203.0.113.1 22"}
    assert I.uplink_interfaces(recorded_host, environ=env, route_lookup=lambda dest: "wg0") == ["wg0"]


def test_no_ssh_session_means_no_uplink(recorded_host):
    assert I.uplink_interfaces(recorded_host, environ={}, route_lookup=lambda d: "br0") == []
    assert I.uplink_interfaces(recorded_host, environ={"SSH_CONNECTION": "garbage"}) == []


def test_rates_from_two_samples_and_counter_reset():
    clock = iter([100.0, 102.0, 103.0])
    samples = iter([{"a": (1000, 500), "b": (10, 10)}, {"a": (3000, 900), "b": (5, 10), "c": (1, 1)}, {"a": (3000, 900)}])
    sampler = I.InterfaceSampler(read=lambda: next(samples), clock=lambda: next(clock))
    assert sampler.sample() == {}  # one sample has no rate yet
    rates = sampler.sample()
    assert rates == {"a": I.InterfaceRate(1000.0, 200.0)}  # b went backwards, c is new
    assert sampler.sample() == {"a": I.InterfaceRate(0.0, 0.0)}


def test_ip_failure_is_one_line(monkeypatch):
    import subprocess

    from hyperconsole.errors import HyperconsoleError

    monkeypatch.setattr(I.subprocess, "run", lambda *a, **k: subprocess.CompletedProcess(a, 1, "", 'Cannot open network namespace "nope": No such file or directory\n'))
    try:
        I.read_interfaces("nope")
    except HyperconsoleError as exc:
        assert "\n" not in str(exc) and "Cannot open network namespace" in str(exc)
    else:
        raise AssertionError("expected a HyperconsoleError")


def test_recorded_files_are_what_ip_prints():
    # Guard against the data drifting from iproute2's shape: top-level lists of objects with ifname.
    for data in (recorded_links(), recorded_addrs()):
        assert isinstance(data, list) and all("ifname" in d and "ifindex" in d for d in data)
    json.dumps(recorded_links())
