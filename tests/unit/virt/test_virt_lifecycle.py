"""Lifecycle operations, lookups and error mapping on the libvirt test driver."""

from __future__ import annotations

import libvirt
import pytest

from hyperconsole.errors import ValidationError
from hyperconsole.virt import lifecycle
from hyperconsole.virt.errors import VirtError
from hyperconsole.virt.models import DomainState
from tests.fixtures import domain_xml, stable_uuid


def state(m, name):
    return DomainState.of(m.conn.lookupByName(name).state()[0])


def test_lifecycle_round_trip(open_host, host_xml):
    m = open_host(host_xml([domain_xml("web [red]x", state="shutoff")]))
    uuid = stable_uuid("domain", "web [red]x")
    lifecycle.start(m, uuid)
    assert state(m, "web [red]x") is DomainState.RUNNING
    lifecycle.pause(m, uuid)
    assert state(m, "web [red]x") is DomainState.PAUSED
    lifecycle.resume(m, uuid)
    assert state(m, "web [red]x") is DomainState.RUNNING
    lifecycle.reboot(m, uuid)  # test driver: reboot keeps it running
    assert state(m, "web [red]x") is DomainState.RUNNING
    lifecycle.shutdown(m, uuid)  # test driver: the "guest" always obeys ACPI at once
    assert state(m, "web [red]x") is DomainState.SHUTOFF
    lifecycle.start(m, "web [red]x")  # by name too
    lifecycle.force_off(m, uuid)
    assert state(m, "web [red]x") is DomainState.SHUTOFF


def test_autostart_and_managed_save(open_host, host_xml):
    m = open_host(host_xml([domain_xml("${evil}", state="running")]))
    dom = m.conn.lookupByName("${evil}")
    lifecycle.set_autostart(m, "${evil}", True)
    assert dom.autostart() == 1
    lifecycle.set_autostart(m, "${evil}", False)
    assert dom.autostart() == 0
    lifecycle.managed_save(m, "${evil}")
    assert dom.hasManagedSaveImage(0) == 1 and state(m, "${evil}") is DomainState.SHUTOFF
    lifecycle.managed_save_remove(m, "${evil}")
    assert dom.hasManagedSaveImage(0) == 0


def test_start_restores_managed_save(open_host, host_xml):
    m = open_host(host_xml([domain_xml("saved", state="shutoff", managed_save=True)]))
    lifecycle.start(m, "saved")
    dom = m.conn.lookupByName("saved")
    assert state(m, "saved") is DomainState.RUNNING and dom.hasManagedSaveImage(0) == 0


def test_libvirt_error_is_one_line_virterror(open_host, host_xml):
    m = open_host(host_xml([domain_xml("quote\"d", state="running")]))
    with pytest.raises(VirtError) as err:
        lifecycle.start(m, "quote\"d")
    text = str(err.value)
    assert "\n" not in text and text.startswith('start quote"d: ') and "already running" in text


def test_unknown_vm(open_host, host_xml):
    m = open_host(host_xml([]))
    with pytest.raises(VirtError, match="no VM 'ghost'"):
        lifecycle.start(m, "ghost")
    with pytest.raises(VirtError, match="no VM"):
        lifecycle.force_off(m, "00000000-0000-0000-0000-000000000000")
    with pytest.raises(ValidationError):
        lifecycle.start(m, "")


def test_bare_connection_is_accepted(open_host, host_xml):
    m = open_host(host_xml([domain_xml("bare", state="shutoff")]))
    lifecycle.start(m.conn, "bare")
    assert state(m, "bare") is DomainState.RUNNING


def test_connection_errors_reach_the_manager(open_host, host_xml, fake_error, monkeypatch):
    """The test driver never loses its connection; a fake error shows check_error is called."""
    m = open_host(host_xml([domain_xml("vm", state="shutoff")]))
    seen = []
    monkeypatch.setattr(m, "check_error", seen.append)
    dom = m.conn.lookupByName("vm")
    boom = fake_error(libvirt.VIR_ERR_RPC, "Cannot write data: Broken pipe\nmore detail")

    def fail(*_a):
        raise boom

    monkeypatch.setattr(libvirt.virConnect, "lookupByName", lambda self, name: dom)
    monkeypatch.setattr(libvirt.virDomain, "create", fail)
    with pytest.raises(VirtError) as err:
        lifecycle.start(m, "vm")
    assert seen == [boom]
    assert str(err.value) == "start vm: Cannot write data: Broken pipe"


def test_console_and_graphics(open_host, host_xml):
    assert lifecycle.console_command("qemu:///system", "-x web [red]x") == [
        "virsh", "-c", "qemu:///system", "console", "--domain", "-x web [red]x"]
    assert lifecycle.ssh_target("qemu+ssh://root@hv1.example/system") == "root@hv1.example"
    assert lifecycle.ssh_target("qemu:///system") == "<host>"
    m = open_host(host_xml([domain_xml("g", state="running", graphics={"type": "vnc", "port": 5905, "listen": "0.0.0.0"})]))
    details = lifecycle.get_details(m, "g")
    (g,) = lifecycle.graphics_info(details)
    assert (g.kind, g.port, g.listen) == ("vnc", 5905, "0.0.0.0")
    assert g.tunnel_hint(lifecycle.ssh_target("qemu+ssh://root@hv1/system")).startswith("ssh -L 5905:127.0.0.1:5905 root@hv1")
