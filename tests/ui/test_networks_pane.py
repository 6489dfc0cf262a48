"""Networks pane on the demo: real host interfaces, the demo's libvirt networks, and host changes
written to the scratch network.nix through the demo rebuild (real nix-instantiate)."""

from __future__ import annotations

import os
import shutil

import libvirt
import pytest

from hyperconsole.host import interfaces as interfaces_mod
from hyperconsole.host import netconfig
from hyperconsole.messages import ActionDone
from hyperconsole.nixos.revert import controller_for
from hyperconsole.screens.networks import NetworksScreen
from hyperconsole.widgets.confirm import ConfirmDialog
from hyperconsole.widgets.form import Form
from scripts.scenes import demo_app, settle
from tests.ui.conftest import fill_form, form_errors, text_of, wait_until
from tests.conftest import in_ci

if shutil.which("nix-instantiate") is None or shutil.which("ip") is None:
    if in_ci():
        raise RuntimeError("nix-instantiate and iproute2 are required for the Networks pane tests in CI")
    pytest.skip("nix-instantiate or ip not installed", allow_module_level=True)


async def open_pane(pilot) -> NetworksScreen:
    await settle(pilot)
    await pilot.press("3")
    for _ in range(30):
        await settle(pilot)
        screen = pilot.app.screen
        if isinstance(screen, NetworksScreen) and screen.host is not None and screen.overview is not None:
            return screen
    raise AssertionError("networks pane never loaded")



async def fill(pilot, values: dict) -> None:
    await fill_form(pilot, values)
    await settle(pilot)


def network_names(screen) -> list[str]:
    return screen.query_one("#nets").shown_keys()


async def test_shows_host_interfaces_and_libvirt_networks_with_their_vms():
    app = demo_app()
    async with app.run_test(size=(150, 42)) as pilot:
        screen = await open_pane(pilot)
        assert "lo" in screen.query_one("#ifaces").items
        assert network_names(screen) == ["build-isolated", "default", "lan-br0"]
        default = next(n for n in screen.overview.networks if n.name == "default")
        assert "db-primary" in default.vms


async def test_create_edit_and_delete_a_libvirt_network():
    app = demo_app()
    seen: list = []
    async with app.run_test(size=(150, 42), message_hook=seen.append) as pilot:
        screen = await open_pane(pilot)
        await pilot.press("tab", "n")  # libvirt network keys work in the networks table
        await pilot.pause()
        await fill(pilot, {"name": "lab", "mode": "isolated", "cidr": "10.9.0.1/24", "start": "10.9.0.10",
                           "end": "10.9.0.20", "bridge": ""})
        await wait_until(pilot, lambda: "lab" in network_names(screen), 10)
        nets = screen.query_one("#nets")
        nets.focus()
        nets.move_to("lab")
        await pilot.press("e")
        await pilot.pause()
        await fill(pilot, {"start": "10.9.0.30", "end": "10.9.0.40"})
        await wait_until(pilot, lambda: any(
            r.dhcp == (("10.9.0.30", "10.9.0.40"),) for n in screen.overview.networks if n.name == "lab" for r in n.ips), 10)
        await pilot.press("delete")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmDialog)
        await pilot.press("y")
        await wait_until(pilot, lambda: "lab" not in network_names(screen), 10)
        assert all(m.error is None for m in seen if isinstance(m, ActionDone))


async def test_bad_network_input_is_refused_in_one_line_and_the_form_stays():
    app = demo_app()
    async with app.run_test(size=(150, 42)) as pilot:
        screen = await open_pane(pilot)
        await pilot.press("tab", "n")  # libvirt network keys work in the networks table
        await pilot.pause()
        await fill(pilot, {"name": "lab", "mode": "nat", "cidr": "10.9.0.1/24", "start": "10.8.0.10",
                           "end": "10.8.0.20", "bridge": ""})
        assert "lab" not in network_names(screen)
        errors = form_errors(app.screen)
        assert list(errors) == [""] and "10.8.0.10" in errors[""] and "\n" not in errors[""], errors
        assert app.screen.widget("start").value == "10.8.0.10"


async def test_new_bridge_is_written_to_network_nix_on_trial_and_kept():
    app = demo_app(confirm_timeout=60)
    async with app.run_test(size=(150, 42)) as pilot:
        await open_pane(pilot)
        await pilot.press("b")
        await pilot.pause()
        await fill(pilot, {"name": "br-lab", "members": "", "rstp": True, "move": False})
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmDialog), 10)
        assert "br-lab" in app.screen.detail and "Bridges changed" in app.screen.detail
        await pilot.press("y")
        await wait_until(pilot, lambda: app.view.pending is not None and app.view.pending.state == "armed", 60)
        await pilot.press("k")
        await wait_until(pilot, lambda: app.view.pending is None, 60)
        config, _ = netconfig.load(controller_for(app.config, demo=True).store)
        assert [b.name for b in config.bridges] == ["br-lab"] and config.bridges[0].rstp is True


async def test_bad_bridge_name_changes_nothing():
    app = demo_app()
    async with app.run_test(size=(150, 42)) as pilot:
        await open_pane(pilot)
        store = controller_for(app.config, demo=True).store
        before = sorted(store.names())
        await pilot.press("b")
        await pilot.pause()
        await fill(pilot, {"name": "a/b", "members": "", "rstp": False, "move": False})
        await settle(pilot)
        assert isinstance(app.screen, Form) and app.screen.widget("name").value == "a/b"
        assert form_errors(app.screen) == {"name": "interface name 'a/b' may contain only letters, digits, '_', '.' "
                                                   "and '-' (interface names end up in shell scripts run as root at activation)"}
        assert sorted(store.names()) == before


async def test_leases_show_for_the_highlighted_network():
    app = demo_app()
    async with app.run_test(size=(150, 42)) as pilot:
        screen = await open_pane(pilot)
        nets = screen.query_one("#nets")
        nets.focus()
        nets.move_to("default")
        await settle(pilot)
        text = text_of(screen.query_one("#leases"))
        # The test driver has no lease database; the pane says so instead of showing "none".
        assert "DHCP leases of default" in text and "not available" in text


async def test_firewall_ports_and_dns_go_to_network_nix():
    app = demo_app(confirm_timeout=60)
    async with app.run_test(size=(150, 42)) as pilot:
        await open_pane(pilot)
        await pilot.press("f")
        await pilot.pause()
        await fill(pilot, {"iface": "br-lab", "tcp": "22 443", "udp": ""})
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmDialog), 10)
        assert "allowedTCPPorts" in app.screen.detail
        await pilot.press("y")
        await wait_until(pilot, lambda: app.view.pending is not None and app.view.pending.state == "armed", 60)
        await pilot.press("k")
        await wait_until(pilot, lambda: app.view.pending is None, 60)
        await pilot.press("d")
        await pilot.pause()
        await fill(pilot, {"servers": "9.9.9.9 1.1.1.1"})
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmDialog), 10)
        await pilot.press("y")  # DNS alone cannot cut the session off: switched directly, no trial
        store = controller_for(app.config, demo=True).store
        await wait_until(pilot, lambda: netconfig.load(store)[0].nameservers == ("9.9.9.9", "1.1.1.1"), 60)
        assert app.view.pending is None
        assert netconfig.load(store)[0].interface("br-lab").tcp_ports == (22, 443)


async def test_non_numeric_ports_are_refused_in_one_line():
    app = demo_app()
    async with app.run_test(size=(150, 42)) as pilot:
        await open_pane(pilot)
        await pilot.press("f")
        await pilot.pause()
        await fill(pilot, {"iface": "eth0", "tcp": "22 ssh", "udp": "1.5"})
        assert isinstance(app.screen, Form)
        assert form_errors(app.screen) == {"tcp": "port must be a whole number from 1 to 65535, not 'ssh'",
                                           "udp": "port must be a whole number from 1 to 65535, not '1.5'"}


BOTH = libvirt.VIR_DOMAIN_AFFECT_LIVE | libvirt.VIR_DOMAIN_AFFECT_CONFIG


async def test_a_vm_with_an_escape_in_its_description_hides_no_network(monkeypatch):
    """libvirt emits XML that does not parse for a description holding ESC: the libvirt networks
    table still lists every network with its VMs, and the pane names the VM it read partly."""
    app = demo_app()
    said: list[tuple[str, str]] = []
    monkeypatch.setattr(app, "notify", lambda message, **kw: said.append((message, kw.get("severity", ""))))
    dom = app.manager.conn.lookupByName("db-primary")
    dom.setMetadata(libvirt.VIR_DOMAIN_METADATA_DESCRIPTION, "\x1b]0;owned\x07\x1b[2J", None, None, BOTH)
    async with app.run_test(size=(150, 42)) as pilot:
        screen = await open_pane(pilot)
        assert network_names(screen) == ["build-isolated", "default", "lan-br0"]
        default = next(n for n in screen.overview.networks if n.name == "default")
        assert "db-primary" in default.vms
        warnings = [m for m, severity in said if severity == "warning" and "db-primary: " in m]
        assert len(warnings) == 1 and "\x1b" not in warnings[0] and "\\x1b" in warnings[0], said


BAD_NAMES = ["{;--$(reboot)'", "$(Tt2j", "brü", "-br", "ｂｒ０", "lo", "x" * 16]


async def test_bad_interface_names_are_refused_in_the_form_and_change_nothing():
    app = demo_app()
    async with app.run_test(size=(150, 42)) as pilot:
        await open_pane(pilot)
        store = controller_for(app.config, demo=True).store
        before = sorted(store.names())
        forms = [("b", "name", lambda n: {"name": n, "members": "", "rstp": False, "move": False}),
                 ("b", "members", lambda n: {"name": "br9", "members": n, "rstp": False, "move": False}),
                 ("v", "name", lambda n: {"name": n, "id": "5", "iface": "eth0"}),
                 ("v", "iface", lambda n: {"name": "v5", "id": "5", "iface": n}),
                 ("i", "iface", lambda n: {"iface": n, "address": "dhcp", "gateway": ""}),
                 ("m", "iface", lambda n: {"iface": n, "mtu": "1500"}),
                 ("f", "iface", lambda n: {"iface": n, "tcp": "22", "udp": ""})]
        # Every name through the bridge form; one each through the others (they share the validator).
        for n, (key, field, values) in enumerate(forms):
            for name in BAD_NAMES if n == 0 else BAD_NAMES[n % len(BAD_NAMES):][:1]:
                await pilot.press(key)
                await pilot.pause()
                await fill(pilot, values(name))
                assert isinstance(app.screen, Form), (key, name)
                errors = form_errors(app.screen)
                assert list(errors) == [field] and "\n" not in errors[field], (key, name, errors)
                assert any(words in errors[field] for words in ("may contain only", "starts with '-'", "may not be 'lo'",
                                                                "longer than 15")), errors
                await pilot.press("escape")
                await settle(pilot)
        assert sorted(store.names()) == before


def pin_host(monkeypatch) -> None:
    """eth0 with 192.0.2.5/24 and the default route stands in for this machine's interfaces."""
    eth0 = interfaces_mod.InterfaceInfo("eth0", 2, "physical", None, "up", True, 1000, 1500, "52:54:00:00:00:01",
                                        (interfaces_mod.AddressInfo("inet", "192.0.2.5", 24),), None)
    lo = interfaces_mod.InterfaceInfo("lo", 1, "loopback", None, "unknown", None, None, 65536, None, (), None)
    monkeypatch.setattr(interfaces_mod, "read_interfaces", lambda netns=None: [lo, eth0])
    monkeypatch.setattr(interfaces_mod, "read_default_routes",
                        lambda netns=None: [interfaces_mod.DefaultRoute("inet", "eth0", "192.0.2.1")])
    monkeypatch.delenv("SSH_CONNECTION", raising=False)  # the local console: no SSH session


async def test_uplink_into_a_bridge_says_so_and_the_plan_moves_its_address(monkeypatch):
    pin_host(monkeypatch)
    app = demo_app(confirm_timeout=0)
    async with app.run_test(size=(150, 42)) as pilot:
        await open_pane(pilot)
        await pilot.press("b")
        await pilot.pause()
        await fill(pilot, {"name": "br-up", "members": "eth0", "rstp": False, "move": False})
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmDialog), 10)
        detail = app.screen.detail
        assert "eth0 carries 192.0.2.5/24, default route via 192.0.2.1; as a member of br-up it loses them" in detail
        assert ("warning: this change touches eth0, the host's uplink (default route or SSH session); "
                "it will be applied with confirm-or-revert") in detail
        assert "reverts by itself after 120 s" in detail  # configured 0, yet the uplink gets a window
        await pilot.press("n")
        await settle(pilot)
        await pilot.press("b")
        await pilot.pause()
        await fill(pilot, {"name": "br-up", "members": "eth0", "rstp": False, "move": True})
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmDialog), 10)
        detail = app.screen.detail
        assert "eth0's 192.0.2.5/24, default route via 192.0.2.1 moves to br-up" in detail
        assert '+      br-up = {' in detail and 'address = "192.0.2.5";' in detail and 'interface = "br-up";' in detail
        await pilot.press("n")


async def test_unreadable_interfaces_put_a_change_on_trial(monkeypatch, script):
    bad_ip = script("ip", "echo 'RTNETLINK answers: Operation not permitted' >&2\nexit 2\n")
    monkeypatch.setenv("PATH", f"{bad_ip.parent}:{os.environ['PATH']}")
    app = demo_app(confirm_timeout=0)
    async with app.run_test(size=(150, 42)) as pilot:
        await settle(pilot)
        await pilot.press("3")
        await wait_until(pilot, lambda: isinstance(app.screen, NetworksScreen) and app.screen.overview is not None, 10)
        await pilot.press("m")
        await pilot.pause()
        await fill(pilot, {"iface": "eth0", "mtu": "1400"})
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmDialog), 10)
        detail = app.screen.detail
        assert "could not be read" in detail and "Operation not permitted" in detail
        assert "eth0 may be the host's uplink" in detail and "reverts by itself after 120 s" in detail
        await pilot.press("n")
