"""`hyperconsole net …` end to end: a scratch NixOS dir, stand-in rebuild/revert scripts, the
recorded host as the interface reader, refusals that leave every file untouched, and the uplink
rule (confirm-or-revert mandatory when the change touches the SSH session's interface)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from hyperconsole import cli
from hyperconsole.cli import net as netcommands
from hyperconsole.host import interfaces, netconfig, netplan
from hyperconsole.nixos.store import FragmentStore



@pytest.fixture
def cli_run(nixos_dir, rebuild_cmds, capsys, monkeypatch):
    """cli.main against the scratch NixOS dir and stand-in rebuild/revert; libvirt not asked."""
    extra, calls = rebuild_cmds
    monkeypatch.setattr(netcommands, "read_vm_nics", lambda config: [])

    def invoke(*argv: str) -> tuple[int, str, str]:
        code = cli.main([*argv, "--nixos-dir", str(nixos_dir), *extra])
        out, err = capsys.readouterr()
        return code, out, err

    invoke.calls = calls
    return invoke


@pytest.fixture
def host(monkeypatch, recorded_host):
    """The recorded host (br0 198.51.100.7 on bond0 over eno1/eno2, default route on br0) stands
    in for this machine; the route lookup is pinned so the machine's own routing table never
    decides a test."""
    monkeypatch.setattr(interfaces, "read_interfaces", lambda netns=None: recorded_host)
    monkeypatch.setattr(interfaces, "read_default_routes", lambda netns=None: [interfaces.DefaultRoute("inet", "br0", "198.51.100.1")])
    monkeypatch.setattr(interfaces, "route_device", lambda dest, netns=None: None)
    return recorded_host


@pytest.fixture
def run(cli_run, host):
    return cli_run


def switch_directly_by_default(tmp_path) -> None:
    """The operator's config says 0: "switch directly unless the change needs a trial"."""
    (tmp_path / "xdg-config" / "hyperconsole").mkdir(parents=True, exist_ok=True)
    (tmp_path / "xdg-config" / "hyperconsole" / "config.yaml").write_text("confirm_timeout: 0\n")


def fragment(nixos_dir: Path) -> Path:
    return nixos_dir / "hyperconsole" / "network.nix"


def snapshot(nixos_dir: Path) -> dict[str, bytes]:
    return {str(p.relative_to(nixos_dir)): p.read_bytes() for p in sorted(nixos_dir.rglob("*")) if p.is_file()}


def test_bridge_add_no_rebuild_prints_diff_and_writes_the_pane_fragment(run, nixos_dir):
    code, out, err = run("net", "bridge", "add", "br1", "--iface", "eth1", "--iface", "eno9", "--rstp", "--no-rebuild")
    assert code == 0, err
    assert out.index("+++ b/hyperconsole/network.nix") < out.index("wrote network.nix")
    assert "warning: bridge br1 member eth1 does not exist on this host (yet)" in err
    expected = netconfig.add_bridge(netconfig.NetworkConfig(), "br1", ["eth1", "eno9"], rstp=True).after
    assert fragment(nixos_dir).read_text() == netconfig.render(expected)
    assert not run.calls.exists()  # --no-rebuild: nothing activated
    code, out, _ = run("net", "bridge", "add", "br1", "--iface", "eth1", "--iface", "eno9", "--rstp", "--no-rebuild")
    assert code == 1  # a second add of the same bridge is refused, not silently merged


def test_vlan_add_and_remove_switch_directly_when_not_on_uplink(run, nixos_dir):
    code, out, err = run("net", "vlan", "add", "vlan30", "--id", "30", "--parent", "eth7", "--confirm-timeout", "0")
    assert code == 0, err
    assert "applied with switch" in out and run.calls.read_text().split() == ["switch"]
    assert "id = 30;" in fragment(nixos_dir).read_text()
    code, out, err = run("net", "vlan", "remove", "vlan30", "--confirm-timeout", "0")
    assert code == 0, err
    assert not fragment(nixos_dir).exists()  # nothing left to configure: the fragment goes


def test_addr_set_dhcp_and_static(run, nixos_dir):
    code, _, err = run("net", "addr", "set", "eth7", "--address", "192.0.2.5/24", "--gateway", "192.0.2.1", "--no-rebuild")
    assert code == 0, err
    text = fragment(nixos_dir).read_text()
    assert 'address = "192.0.2.5";' in text and 'interface = "eth7";' in text
    code, _, err = run("net", "addr", "set", "eth7", "--dhcp", "--no-rebuild")
    assert code == 0, err
    assert "useDHCP = true;" in fragment(nixos_dir).read_text() and "defaultGateway" not in fragment(nixos_dir).read_text()


@pytest.mark.parametrize("argv, words", [
    (["net", "bridge", "add", "br1", "--iface", "br1"], "cannot be a member of itself"),
    (["net", "vlan", "add", "v1", "--id", "4095", "--parent", "eth0"], "VLAN id must be a whole number from 1 to 4094"),
    (["net", "vlan", "add", "v1", "--id", "0", "--parent", "eth0"], "VLAN id must be"),
    (["net", "addr", "set", "eth0", "--address", "192.0.2.5/24", "--gateway", "198.51.100.1"], "not inside 192.0.2.0/24"),
    (["net", "addr", "set", "eth0", "--address", "192.0.2.5"], "not an address with prefix"),
    (["net", "mtu", "eth0", "40"], "MTU must be a whole number from 68 to 65535"),
    (["net", "firewall", "eth0", "--allow-tcp", "70000"], "port must be a whole number from 1 to 65535"),
    (["net", "firewall", "eth0", "--remove-udp", "53"], "port 53/udp is not open on eth0"),
    (["net", "firewall", "eth0"], "name ports to open or close"),
    (["net", "dns", "--server", "dns.example"], "nameserver 'dns.example' is not a valid IP address"),
    (["net", "addr", "set", "eth0", "--dhcp", "--gateway", "192.0.2.1"], "DHCP provides it"),
    (["net", "bridge", "remove", "nosuch"], "there is no bridge nosuch"),
    (["net", "vlan", "remove", "nosuch"], "there is no VLAN nosuch"),
])
def test_refusals_are_one_line_and_change_nothing(run, nixos_dir, argv, words):
    before = snapshot(nixos_dir)
    code, out, err = run(*argv)
    assert code == 1
    assert err.startswith("error: ") and err.count("\n") == 1 and words in err
    assert snapshot(nixos_dir) == before and not run.calls.exists()


def test_second_bridge_claiming_a_member_is_refused_and_file_untouched(run, nixos_dir):
    assert run("net", "bridge", "add", "br1", "--iface", "eth1", "--no-rebuild")[0] == 0
    before = snapshot(nixos_dir)
    code, _, err = run("net", "bridge", "add", "br2", "--iface", "eth1", "--no-rebuild")
    assert code == 1 and "eth1 is already in bridge br1" in err and err.count("\n") == 1
    assert snapshot(nixos_dir) == before


def test_hand_edited_fragment_is_never_overwritten(run, nixos_dir):
    (nixos_dir / "hyperconsole").mkdir()
    fragment(nixos_dir).write_text('{ networking.hostName = "kept"; }\n')
    code, _, err = run("net", "bridge", "add", "br1", "--iface", "eth1", "--no-rebuild")
    assert code == 1 and "networking.hostName is not an option hyperconsole manages" in err
    assert fragment(nixos_dir).read_text() == '{ networking.hostName = "kept"; }\n'


def test_uplink_change_refuses_confirm_timeout_zero(run, nixos_dir, monkeypatch):
    monkeypatch.setenv("SSH_CONNECTION", "198.51.100.50 50022 198.51.100.7 22")  # the session is on br0
    before = snapshot(nixos_dir)
    code, out, err = run("net", "addr", "set", "br0", "--address", "198.51.100.8/24", "--confirm-timeout", "0")
    assert code == 1 and err.count("\n") == 1
    assert "touches br0, the host's uplink" in err and "confirm timeout of 0 is refused" in err
    assert snapshot(nixos_dir) == before and not run.calls.exists() and out == ""
    # The session coming in over wg0 does not make br0 safe: the default route still leaves by it.
    monkeypatch.setenv("SSH_CONNECTION", "10.100.0.9 40000 10.100.0.1 22")
    code, out, err = run("net", "addr", "set", "br0", "--address", "198.51.100.8/24", "--confirm-timeout", "0")
    assert code == 1 and "touches br0, the host's uplink" in err
    # A change off the uplink is fine with 0.
    code, out, err = run("net", "addr", "set", "eth7", "--address", "192.0.2.8/24", "--confirm-timeout", "0")
    assert code == 0, err
    assert run.calls.read_text().split() == ["switch"]


def test_uplink_change_is_applied_with_confirm_or_revert_and_reverts(run, nixos_dir, monkeypatch, tmp_path):
    # Config says 0 ("switch directly"), yet a change on the uplink still gets a revert window.
    switch_directly_by_default(tmp_path)
    monkeypatch.setattr(netplan, "UPLINK_FALLBACK_TIMEOUT", 2)  # the fallback window, kept short
    monkeypatch.setenv("SSH_CONNECTION", "198.51.100.50 50022 198.51.100.7 22")
    code, out, err = run("net", "vlan", "add", "v9", "--id", "9", "--parent", "eno1")  # eno1 carries br0
    assert code == 0, err
    assert "trial configuration active" in out and "within 2s" in out
    assert "touches bond0, eno1, the host's uplink" in err
    assert run.calls.read_text().split() == ["test"]
    assert "id = 9;" in fragment(nixos_dir).read_text()
    # Nobody confirms: the timer restores the files and runs the revert command.
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not (run.calls.read_text().split()[-1:] == ["revert"] and not fragment(nixos_dir).exists()):
        time.sleep(0.1)
    assert run.calls.read_text().split() == ["test", "revert"]
    assert not fragment(nixos_dir).exists()


def test_net_show_plain_table(capsys, host, monkeypatch):
    monkeypatch.setenv("SSH_CONNECTION", "198.51.100.50 50022 198.51.100.7 22")
    assert cli.main(["net", "show"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:3] == ["NAME", "KIND", "STATE"]
    rows = {line.split()[0]: line for line in out[1:]}
    assert "members=bond0,vnet0 stp=on" in rows["br0"] and "[uplink]" in rows["br0"]
    assert "vlan 20 on bond0" in rows["bond0.20"] and "bond 802.3ad slaves=eno1,eno2" in rows["bond0"]
    assert "[uplink]" not in rows["wg0"]


def test_net_commands_registered_in_cli():
    # (core modules importing no Textual/Rich: tests/unit/core/test_import_hygiene.py covers all of them)
    args = cli.build_parser().parse_args(["net", "vlan", "add", "v1", "--id", "5", "--parent", "eth0", "--nixos-dir", "/x"])
    assert args.func is netcommands.cmd_vlan_add and args.nixos_dir == "/x" and args.confirm_timeout is None


# -- the uplink without SSH, and when it cannot be known ----------------------------------------------


def confirm(run) -> None:
    """Keep the trial (switch) so no revert timer outlives the test."""
    assert run("confirm")[0] == 0


def test_without_ssh_the_default_route_interface_goes_on_trial(run, nixos_dir, tmp_path):
    # IPMI or the local console: no SSH_CONNECTION (the conftest removes it), config says 0.
    switch_directly_by_default(tmp_path)
    code, out, err = run("net", "addr", "set", "br0", "--dhcp", "--confirm-timeout", "0")
    assert code == 1 and "touches br0, the host's uplink" in err and not run.calls.exists()
    code, out, err = run("net", "mtu", "eno2", "9000")  # eno2 is under bond0 under br0
    assert code == 0, err
    assert "trial configuration active" in out and run.calls.read_text().split() == ["test"]
    confirm(run)
    assert run.calls.read_text().split() == ["test", "switch"]


@pytest.mark.parametrize("broken", ["fails", "hangs"])
def test_unreadable_interfaces_mean_any_change_may_touch_the_uplink(cli_run, fake_ip, monkeypatch, tmp_path, nixos_dir,
                                                                    broken):
    if broken == "fails":
        fake_ip("echo 'RTNETLINK answers: Operation not permitted' >&2\nexit 2\n")
        reason = "Operation not permitted"
    else:
        fake_ip("exec sleep 30\n")
        monkeypatch.setattr(interfaces, "IP_TIMEOUT", 0.5)
        reason = "did not answer within 0.5s"
    switch_directly_by_default(tmp_path)
    before = snapshot(nixos_dir)
    for argv in (["net", "addr", "set", "eth0", "--address", "192.0.2.9/24"], ["net", "addr", "set", "eth0", "--dhcp"],
                 ["net", "mtu", "eth0", "1400"]):
        code, out, err = cli_run(*argv, "--confirm-timeout", "0")
        assert code == 1 and err.count("\n") == 1, err
        assert "could not be read" in err and reason in err and "eth0 may be the host's uplink" in err
        assert snapshot(nixos_dir) == before
    code, out, err = cli_run("net", "mtu", "eth0", "1400")
    assert code == 0, err
    assert "trial configuration active" in out and cli_run.calls.read_text().split() == ["test"]
    assert "existence checks skipped" in err
    confirm(cli_run)


def test_interface_and_vlan_options_are_risky_roots(run, tmp_path):
    # Off the uplink, with a non-zero configured window: networking.interfaces and
    # networking.vlans changes go on trial; nameservers alone switch directly.
    (tmp_path / "xdg-config" / "hyperconsole").mkdir(parents=True)
    (tmp_path / "xdg-config" / "hyperconsole" / "config.yaml").write_text("confirm_timeout: 60\n")
    code, out, err = run("net", "mtu", "eth7", "1400")
    assert code == 0, err
    assert "within 60s" in out
    confirm(run)
    code, out, err = run("net", "vlan", "add", "v7", "--id", "7", "--parent", "eth7")
    assert code == 0 and "within 60s" in out
    confirm(run)
    code, out, err = run("net", "dns", "--server", "192.0.2.53")
    assert code == 0 and "applied with switch" in out
    assert run.calls.read_text().split() == ["test", "switch", "test", "switch", "switch"]


# -- mtu, firewall, dns -------------------------------------------------------------------------------


def test_mtu_firewall_and_dns_write_the_pane_fragment(run, nixos_dir):
    assert run("net", "mtu", "eth7", "9000", "--no-rebuild")[0] == 0
    assert run("net", "firewall", "eth7", "--allow-tcp", "22", "443", "--allow-udp", "53", "--no-rebuild")[0] == 0
    assert run("net", "firewall", "eth7", "--remove-tcp", "443", "--allow-tcp", "8443", "--no-rebuild")[0] == 0
    assert run("net", "dns", "--server", "192.0.2.53", "--server", "2001:db8::53", "--no-rebuild")[0] == 0
    config, _ = netconfig.load(FragmentStore(nixos_dir))
    assert config.interface("eth7") == netconfig.InterfaceConfig("eth7", mtu=9000, tcp_ports=(22, 8443), udp_ports=(53,))
    assert config.nameservers == ("192.0.2.53", "2001:db8::53")
    expected = netconfig.set_nameservers(netconfig.set_firewall_ports(netconfig.set_mtu(
        netconfig.NetworkConfig(), "eth7", 9000).after, "eth7", tcp=[22, 8443], udp=[53]).after,
        ["192.0.2.53", "2001:db8::53"]).after
    assert fragment(nixos_dir).read_text() == netconfig.render(expected)
    assert run("net", "mtu", "eth7", "default", "--no-rebuild")[0] == 0
    assert run("net", "dns", "--clear", "--no-rebuild")[0] == 0
    config, _ = netconfig.load(FragmentStore(nixos_dir))
    assert config.interface("eth7").mtu is None and config.nameservers == ()


@pytest.mark.parametrize("text", ["1.5", "1e3", "+3", "9k"])
def test_numbers_are_digits_only(run, nixos_dir, text):
    with pytest.raises(SystemExit) as exc:
        run("net", "mtu", "eth7", text)
    assert exc.value.code == 2 and not (nixos_dir / "hyperconsole").exists()


# -- the uplink made a bridge member ---------------------------------------------------------------------


@pytest.fixture
def plain_host(monkeypatch):
    """eth0 holds 192.0.2.5/24 and the default route; no SSH session."""
    eth0 = interfaces.InterfaceInfo("eth0", 2, "physical", None, "up", True, 1000, 1500, "52:54:00:00:00:01",
                                    (interfaces.AddressInfo("inet", "192.0.2.5", 24),), None)
    monkeypatch.setattr(interfaces, "read_interfaces", lambda netns=None: [eth0])
    monkeypatch.setattr(interfaces, "read_default_routes", lambda netns=None: [interfaces.DefaultRoute("inet", "eth0", "192.0.2.1")])
    monkeypatch.setattr(interfaces, "route_device", lambda dest, netns=None: None)


def test_uplink_into_a_bridge_warns_and_moves_its_address_when_asked(cli_run, plain_host, nixos_dir):
    code, out, err = cli_run("net", "bridge", "add", "br0", "--iface", "eth0", "--no-rebuild")
    assert code == 0, err
    assert "eth0 carries 192.0.2.5/24, default route via 192.0.2.1; as a member of br0 it loses them" in err
    assert "hint: --move-address moves the addressing of eth0 to the bridge" in err
    assert "touches eth0, the host's uplink" in err
    assert netconfig.load(FragmentStore(nixos_dir))[0].interface("br0").is_empty
    assert cli_run("net", "bridge", "remove", "br0", "--no-rebuild")[0] == 0
    code, out, err = cli_run("net", "bridge", "add", "br0", "--iface", "eth0", "--move-address", "--no-rebuild")
    assert code == 0, err
    assert "eth0's 192.0.2.5/24, default route via 192.0.2.1 moves to br0" in err and "hint:" not in err
    config, _ = netconfig.load(FragmentStore(nixos_dir))
    assert config.interface("br0").ipv4 == ("192.0.2.5/24",) and config.gateway4 == netconfig.Gateway("192.0.2.1", "br0")
