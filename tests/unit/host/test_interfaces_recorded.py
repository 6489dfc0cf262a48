"""Parsing RECORDED `ip -j -d -s link` / `ip -j addr` output of a host with a bond (802.3ad,
one slave without carrier), a bridge with RSTP on top of it, two VLANs (802.1Q on the bond,
802.1ad on a NIC), a VM tap and a WireGuard link.

Recorded rather than created because this test machine's kernel has no 8021q or bonding module,
so VLAN and bond devices cannot be made here; tests/unit/host/data/ holds the JSON (iproute2 6.1
format). Bridges and veths are read live in test_interfaces_netns.py."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from hyperconsole.errors import HyperconsoleError
from hyperconsole.host import interfaces as I
from tests.unit.host.conftest import process_gone

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


def uplink(host, env, dev=None, routes=()):
    return sorted(I.find_uplink(host, routes, environ=env, route_lookup=lambda dest: dev).names)


def test_uplink_on_bridge_includes_bond_and_its_slaves(recorded_host):
    env = {"SSH_CONNECTION": "198.51.100.50 50022 198.51.100.7 22"}
    # vnet0 is a br0 member too: changing it cannot cut the session, but listing it is harmless
    # and keeps the rule simple (every lower device of the uplink).
    assert uplink(recorded_host, env, "br0") == ["bond0", "br0", "eno1", "eno2", "vnet0"]


def test_uplink_on_vlan_includes_parent_chain(recorded_host):
    env = {"SSH_CONNECTION": "10.20.9.9 40000 10.20.0.7 22"}
    uplinks = uplink(recorded_host, env, "bond0.20")
    assert {"bond0.20", "bond0", "eno1", "eno2", "br0"} <= set(uplinks)
    assert "wg0" not in uplinks and "mgmt" not in uplinks


def test_uplink_by_route_when_server_address_is_not_local(recorded_host):
    # e.g. SSH reached the host through a DNAT: the route back to the client decides.
    env = {"SSH_CONNECTION": "10.100.0.9 40000 203.0.113.1 22"}
    assert uplink(recorded_host, env, "wg0") == ["wg0"]


def test_without_ssh_the_default_route_is_the_uplink(recorded_host):
    # IPMI, the local console, a serial line: no SSH_CONNECTION, and the default route still
    # leaves by br0, so br0 and everything below it is the uplink.
    routes = [I.DefaultRoute("inet", "br0", "198.51.100.1")]
    assert uplink(recorded_host, {}, routes=routes) == ["bond0", "br0", "eno1", "eno2", "vnet0"]
    assert uplink(recorded_host, {"SSH_CONNECTION": "garbage"}, routes=routes) == ["bond0", "br0", "eno1", "eno2", "vnet0"]
    # Both count when the session comes in elsewhere; a default route on loopback counts for nothing.
    both = uplink(recorded_host, {"SSH_CONNECTION": "10.100.0.9 40000 10.100.0.1 22"}, "wg0", routes)
    assert both == ["bond0", "br0", "eno1", "eno2", "vnet0", "wg0"]
    assert uplink(recorded_host, {}, routes=[I.DefaultRoute("inet", "lo")]) == []


def test_default_routes_of_every_family_and_nexthop(fake_ip):
    fake_ip("""\
        case "$*" in
          *"-4 route show default"*) echo '[{"dst":"default","gateway":"192.0.2.1","dev":"br0","flags":[]}]' ;;
          *"-6 route show default"*) echo '[{"dst":"default","flags":[],"nexthops":[{"gateway":"fe80::1","dev":"eno1"},{"gateway":"fe80::2","dev":"eno2"}]}]' ;;
          *) exit 1 ;;
        esac
        """)
    assert I.read_default_routes() == [I.DefaultRoute("inet", "br0", "192.0.2.1"), I.DefaultRoute("inet6", "eno1", "fe80::1"),
                                       I.DefaultRoute("inet6", "eno2", "fe80::2")]


def test_rates_from_two_samples_and_counter_reset():
    clock = iter([100.0, 102.0, 103.0])
    samples = iter([{"a": (1000, 500), "b": (10, 10)}, {"a": (3000, 900), "b": (5, 10), "c": (1, 1)}, {"a": (3000, 900)}])
    sampler = I.InterfaceSampler(read=lambda: next(samples), clock=lambda: next(clock))
    assert sampler.sample() == {}  # one sample has no rate yet
    rates = sampler.sample()
    assert rates == {"a": I.InterfaceRate(1000.0, 200.0)}  # b went backwards, c is new
    assert sampler.sample() == {"a": I.InterfaceRate(0.0, 0.0)}


def test_ip_failure_is_one_line_and_leaves_the_uplink_unknown(fake_ip):
    fake_ip('echo "Cannot open network namespace \\"nope\\": No such file or directory" >&2\nexit 1\n')
    with pytest.raises(HyperconsoleError) as exc:
        I.read_interfaces("nope")
    assert "\n" not in str(exc.value) and "Cannot open network namespace" in str(exc.value)
    host = I.read_host()
    assert host.names is None and not host.uplink.known and "Cannot open network namespace" in host.uplink.reason
    assert host.uplink.touched(["eth0"]) == ["eth0"]  # unknown: any interface may be the uplink


def test_hanging_ip_is_killed_at_the_deadline(fake_ip, monkeypatch, tmp_path):
    # The stand-in forks a child that keeps stdout open for ten minutes: killing only `ip` would
    # leave the reader waiting for the child's end of the pipe, i.e. hanging.
    pidfile = tmp_path / "child.pid"
    fake_ip(f"sleep 600 &\necho $! > {pidfile}\nwait\n")
    monkeypatch.setattr(I, "IP_TIMEOUT", 0.5)
    host = I.read_host()
    assert not host.uplink.known and "did not answer within 0.5s" in host.error
    assert process_gone(int(pidfile.read_text()))  # the whole group went, not only ip


def test_control_characters_in_recorded_ip_output():
    # Recorded from a namespace with veths named "v\x01x" and "p\x1b]0;T\x07": iproute2 writes
    # the bytes raw, which strict JSON refuses.
    links = (DATA / "ip-link-control-char.json").read_bytes()
    with pytest.raises(ValueError):
        json.loads(links)
    host = by_name(I.parse_interfaces(I.loads_tolerant(os.fsdecode(links)),
                                      I.loads_tolerant(os.fsdecode((DATA / "ip-addr-control-char.json").read_bytes()))))
    assert set(host) == {"lo", "v\x01x", "p\x1b]0;T\x07"}
    assert host["v\x01x"].kind == "veth" and host["v\x01x"].mtu == 1500


def test_recorded_files_are_what_ip_prints():
    # Guard against the data drifting from iproute2's shape: top-level lists of objects with ifname.
    for data in (recorded_links(), recorded_addrs()):
        assert isinstance(data, list) and all("ifname" in d and "ifindex" in d for d in data)
    json.dumps(recorded_links())
