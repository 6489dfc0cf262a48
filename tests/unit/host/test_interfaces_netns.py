"""interfaces.py against a real network namespace: a bridge with two veth members, MTU and
addresses set, read back with `ip -n` and the namespace's own /sys. Only the namespace the test
creates is touched (every `ip` call below carries `-n NS`), and it is always deleted.
With CI=true a namespace that cannot be created FAILS the test; elsewhere it skips."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid

import pytest

from hyperconsole.errors import HyperconsoleError
from hyperconsole.host import interfaces as I


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _ip(ns: str, *args: str) -> None:
    subprocess.run(["ip", "-n", ns, *args], check=True, capture_output=True, text=True, timeout=10)


@pytest.fixture
def netns():
    name = f"hc-test-{uuid.uuid4().hex[:8]}"
    reason = None
    if shutil.which("ip") is None:
        reason = "iproute2 is not installed"
    else:
        done = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True, timeout=10)
        if done.returncode != 0:
            reason = f"cannot create a network namespace: {done.stderr.strip()}"
    if reason:
        if _in_ci():
            pytest.fail(reason)
        pytest.skip(reason)
    try:
        _ip(name, "link", "add", "hcbr0", "type", "bridge")
        _ip(name, "link", "add", "hcv0", "type", "veth", "peer", "name", "hcp0")
        _ip(name, "link", "add", "hcv1", "type", "veth", "peer", "name", "hcp1")
        for member in ("hcv0", "hcv1"):
            _ip(name, "link", "set", member, "master", "hcbr0")
        _ip(name, "link", "set", "hcbr0", "mtu", "1400")
        _ip(name, "link", "set", "hcp1", "mtu", "9000")
        _ip(name, "addr", "add", "10.77.0.1/24", "dev", "hcbr0")
        _ip(name, "addr", "add", "2001:db8:77::1/64", "dev", "hcbr0", "nodad")
        for link in ("lo", "hcbr0", "hcv0", "hcp0", "hcv1"):
            _ip(name, "link", "set", link, "up")
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=10)


def test_bridge_with_veth_members_read_back(netns):
    host = {i.name: i for i in I.read_interfaces(netns)}
    assert set(host) == {"lo", "hcbr0", "hcv0", "hcp0", "hcv1", "hcp1"}
    br = host["hcbr0"]
    assert br.kind == "bridge" and br.bridge == I.BridgeInfo(("hcv0", "hcv1"), 0)
    assert br.mtu == 1400 and host["hcp1"].mtu == 9000
    cidrs = {a.cidr for a in br.addresses}
    assert {"10.77.0.1/24", "2001:db8:77::1/64"} <= cidrs
    assert host["hcv0"].kind == "veth" and host["hcv0"].master == "hcbr0"
    assert host["lo"].kind == "loopback"
    # hcv0's peer is up, so it has carrier; hcv1's peer hcp1 is down, so hcv1 has none.
    assert host["hcv0"].carrier is True and host["hcv1"].carrier is False
    assert host["hcp1"].carrier is None and host["hcp1"].state == "down"
    # veth reports a nominal 10000 Mb/s through the namespace's own /sys.
    assert host["hcv0"].speed_mbps == 10000
    assert isinstance(host["hcv0"].rx_bytes, int)


def test_stp_state_from_namespace_sysfs(netns):
    _ip(netns, "link", "set", "hcbr0", "type", "bridge", "stp_state", "1")
    assert {i.name: i for i in I.read_interfaces(netns)}["hcbr0"].bridge.stp_state == 1


def test_counters_and_rates_in_namespace(netns):
    sampler = I.InterfaceSampler(netns)
    assert sampler.sample() == {}
    # Traffic on the bridge address inside the namespace moves lo's counters.
    # (UDP from Python: this machine has no ping.) Local traffic travels over lo.
    send = "import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); [s.sendto(b'x' * 1000, ('10.77.0.1', 9)) for _ in range(10)]"
    subprocess.run(["ip", "netns", "exec", netns, sys.executable, "-c", send], check=True, capture_output=True, timeout=10)
    rates = sampler.sample()
    assert rates["lo"].rx_bps > 0 and rates["lo"].tx_bps > 0
    assert set(rates) >= {"hcbr0", "hcv0"} and rates["hcv1"].rx_bps == 0


def test_uplink_of_an_ssh_session_inside_namespace(netns):
    env = {"SSH_CONNECTION": "10.77.0.9 40000 10.77.0.1 22"}
    host = I.read_host(netns, environ=env)
    assert host.routes == () and sorted(host.uplink.names) == ["hcbr0", "hcv0", "hcv1"]


def test_uplink_is_the_default_route_without_ssh(netns):
    # IPMI, a serial line or the local console: no SSH_CONNECTION, yet the default route is the
    # host's way out, and the bridge carrying it takes its members with it.
    _ip(netns, "route", "add", "default", "via", "10.77.0.254", "dev", "hcbr0")
    host = I.read_host(netns, environ={})
    assert host.routes == (I.DefaultRoute("inet", "hcbr0", "10.77.0.254"),)
    assert host.uplink.known and sorted(host.uplink.names) == ["hcbr0", "hcv0", "hcv1"]
    assert "lo" not in host.uplink.names and "hcp0" not in host.uplink.names


CONTROL_NAMES = ("v\x01x", "p\x1b]0;T\x07", "n\xffy")  # the last is not UTF-8


@pytest.fixture
def odd_names(netns):
    """Real links whose names hold a control character, an OSC title sequence and a byte that
    is not UTF-8: the kernel takes them, and `ip -j` prints them raw (not valid JSON)."""
    first, second, third = (n.encode("latin-1") for n in CONTROL_NAMES)
    for name, peer in ((first, second), (third, b"hcz0")):
        subprocess.run([b"ip", b"-n", netns.encode(), b"link", b"add", name, b"type", b"veth", b"peer", b"name", peer],
                       check=True, capture_output=True, timeout=10)
    raw = subprocess.run(["ip", "-n", netns, "-j", "link", "show"], capture_output=True, timeout=10).stdout
    with pytest.raises(ValueError):
        json.loads(raw)  # what made `net show` fail before
    return netns


def test_names_with_control_characters_are_read_raw(odd_names):
    host = {i.name: i for i in I.read_interfaces(odd_names)}
    assert {"v\x01x", "p\x1b]0;T\x07", "n\udcffy"} <= set(host)
    assert host["v\x01x"].kind == "veth" and host["v\x01x"].carrier is None
    # The undecodable byte round-trips: ip's names and the namespace's /sys entries are the same.
    assert set(I._sysfs_in(odd_names)) == set(host) and os.fsencode("n\udcffy") == b"n\xffy"


def test_net_show_prints_such_names_escaped(odd_names, capsys):
    from hyperconsole import cli

    assert cli.main(["net", "show", "--netns", odd_names]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out and "\x01" not in out
    names = [line.split()[0] for line in out.splitlines()[1:]]
    assert sorted(names) == sorted(["lo", "hcbr0", "hcv0", "hcp0", "hcv1", "hcp1", "v\\x01x", "p\\x1b]0;T\\x07",
                                    "n\\udcffy", "hcz0"])


def test_missing_namespace_is_one_line():
    with pytest.raises(HyperconsoleError) as exc:
        I.read_interfaces(f"hc-test-absent-{uuid.uuid4().hex[:6]}")
    assert "\n" not in str(exc.value)
