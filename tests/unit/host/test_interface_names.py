"""One validator for interface, bridge and VLAN names (names.interface_name), and every place that
takes one refuses the same names: the net CLI, the network.nix model (edits and read-back), and
libvirt network / VM creation with a host bridge. The Networks pane's plan is tested in
tests/ui/test_networks_pane.py. NixOS's scripted networking puts these names unquoted into shell
scripts run as root, so only letters, digits, '_', '.' and '-' pass."""

from __future__ import annotations

import pytest

from hyperconsole import cli, names
from hyperconsole.errors import ValidationError
from hyperconsole.host import netconfig as nc
from hyperconsole.virt import create, networks
from hyperconsole.virt.connection import ConnectionManager
from tests.fixtures import test_uri
from tests.unit.virt.conftest import standard_host

BAD = [
    ("{;--$(reboot)'", "may contain only letters, digits"),
    ("$(Tt2j", "may contain only letters, digits"),
    ("brü", "may contain only letters, digits"),
    ("-br", "starts with '-'"),
    ("ｂｒ０", "may contain only letters, digits"),  # full-width look-alikes of br0
    ("lo", "may not be 'lo'"),
    ("x" * 16, "longer than 15"),
    ("", "must not be empty"),
    ("a b", "may contain only"),
    ("a/b", "may contain only"),
    ("eth0:1", "may contain only"),
    ("a\x01b", "may contain only"),
    ("..", "not allowed"),
]
GOOD = ["eth0", "br-lan", "a", "x" * 15, "bond0.20", "vlan_7", "enp3s0f1", "0br", "in"]


def one_line(exc: pytest.ExceptionInfo) -> str:
    text = str(exc.value)
    assert text and "\n" not in text
    return text


@pytest.mark.parametrize("name", GOOD)
def test_safe_names_pass_unchanged(name):
    assert names.interface_name(name) == name


@pytest.mark.parametrize("name, words", BAD)
def test_validator_refuses_in_one_line(name, words):
    with pytest.raises(ValidationError) as exc:
        names.interface_name(name)
    assert words in one_line(exc)


def test_loopback_only_where_asked_for():
    assert names.interface_name("lo", allow_lo=True) == "lo"


EDITS = {
    "bridge name": lambda n: nc.add_bridge(nc.NetworkConfig(), n, ["eth0"]),
    "bridge member": lambda n: nc.add_bridge(nc.NetworkConfig(), "br9", [n]),
    "VLAN name": lambda n: nc.add_vlan(nc.NetworkConfig(), n, 5, "eth0"),
    "VLAN parent": lambda n: nc.add_vlan(nc.NetworkConfig(), "v5", 5, n),
    "address": lambda n: nc.set_address(nc.NetworkConfig(), n, dhcp=True),
    "MTU": lambda n: nc.set_mtu(nc.NetworkConfig(), n, 1500),
    "firewall": lambda n: nc.change_firewall_ports(nc.NetworkConfig(), n, open_tcp=[22]),
    "read back (bridge)": lambda n: nc.from_options({"networking": {"bridges": {n: {"interfaces": []}}}}),
    "read back (member)": lambda n: nc.from_options({"networking": {"bridges": {"br9": {"interfaces": [n]}}}}),
    "read back (VLAN parent)": lambda n: nc.from_options({"networking": {"vlans": {"v5": {"id": 5, "interface": n}}}}),
    "read back (gateway)": lambda n: nc.from_options({"networking": {"defaultGateway": {"address": "192.0.2.1", "interface": n}}}),
}


@pytest.mark.parametrize("name, words", BAD)
@pytest.mark.parametrize("where", sorted(EDITS))
def test_network_model_refuses(where, name, words):
    with pytest.raises(ValidationError) as exc:
        EDITS[where](name)
    assert words in one_line(exc)


CLI = {
    "bridge": lambda n: ["net", "bridge", "add", "--", n],
    "bridge member": lambda n: ["net", "bridge", "add", f"--iface={n}", "--", "br9"],
    "bridge remove": lambda n: ["net", "bridge", "remove", "--", n],
    "vlan": lambda n: ["net", "vlan", "add", "--id", "5", "--parent", "eth0", "--", n],
    "vlan parent": lambda n: ["net", "vlan", "add", "--id", "5", f"--parent={n}", "--", "v5"],
    "addr": lambda n: ["net", "addr", "set", "--dhcp", "--", n],
    "mtu": lambda n: ["net", "mtu", "--", n, "1500"],
    "firewall": lambda n: ["net", "firewall", "--allow-tcp", "22", "--", n],
}


@pytest.mark.parametrize("name, words", BAD)
@pytest.mark.parametrize("command", sorted(CLI))
def test_net_commands_refuse_as_usage_errors_and_write_nothing(tmp_path, capsys, command, name, words):
    nixos_dir = tmp_path / "etc-nixos"
    nixos_dir.mkdir()
    with pytest.raises(SystemExit) as exc:
        cli.main([*CLI[command](name)[:2], "--nixos-dir", str(nixos_dir), *CLI[command](name)[2:]])
    assert exc.value.code == 2
    assert words in capsys.readouterr().err
    assert list(nixos_dir.iterdir()) == []


@pytest.mark.parametrize("name, words", [b for b in BAD if b[0]])  # empty there means "no bridge"
def test_libvirt_network_and_vm_creation_refuse_the_same_bridge_names(tmp_path, name, words):
    manager = ConnectionManager(test_uri(tmp_path, standard_host()))
    manager.connect()
    try:
        before = sorted(n.name() for n in manager.conn.listAllNetworks(0))
        for spec in (networks.NewNetworkSpec("n", mode="bridge", bridge=name),
                     networks.NewNetworkSpec("n", mode="isolated", bridge=name)):
            with pytest.raises(ValidationError) as exc:
                networks.create_network(manager, spec)
            assert words in one_line(exc)
        assert sorted(n.name() for n in manager.conn.listAllNetworks(0)) == before
        with pytest.raises(ValidationError) as exc:
            create.create_domain(manager, create.NewDomainSpec("vm", memory_mib=256, network=name, network_kind="bridge"))
        assert words in one_line(exc)
        assert manager.conn.listAllDomains(0) == []
    finally:
        manager.close()
