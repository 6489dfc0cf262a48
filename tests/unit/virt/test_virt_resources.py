"""edit_resources: inactive XML → change → define, then live where possible."""

from __future__ import annotations

import libvirt
import pytest

from hyperconsole.errors import ValidationError
from hyperconsole.virt import resources
from tests.fixtures import domain_xml

# standard host: 1 node x 1 socket x 8 cores x 2 threads = 16 CPUs, 64 GiB


def inactive(m, name):
    return m.conn.lookupByName(name).XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)


def test_shut_off_vm_changes_at_next_boot(open_host, host_xml):
    m = open_host(host_xml([domain_xml("web [red]x", state="shutoff", vcpus=2, memory_mib=1024)]))
    result = resources.edit_resources(m, "web [red]x", 4, 2048)
    assert [(c.what, c.old, c.new, c.live) for c in result.changes] == [
        ("vcpus", 2, 4, False), ("memory", 1024, 2048, False)]
    assert result.at_next_boot == result.changes and "at next boot" in result.summary()
    xml = inactive(m, "web [red]x")
    assert resources.vcpu_limits(xml).current == 4 and resources.memory_mib_of(xml) == 2048
    assert "+  <vcpu" in result.xml_diff


def test_running_vm_applies_live_within_maximum(open_host, host_xml):
    xml = domain_xml("vm", state="running", vcpus=4, memory_mib=2048).replace(
        "<vcpu placement=\"static\">4</vcpu>", "<vcpu placement=\"static\" current=\"4\">4</vcpu>")
    m = open_host(host_xml([xml]))
    result = resources.edit_resources(m, "vm", 2, 1024)
    assert [(c.what, c.live) for c in result.changes] == [("vcpus", True), ("memory", True)]
    dom = m.conn.lookupByName("vm")
    assert dom.info()[3] == 2  # live vCPUs
    assert dom.info()[2] == 1024 * 1024  # live balloon
    assert resources.vcpu_limits(inactive(m, "vm")) == resources.VcpuLimits(2, 4)


def test_running_vm_raising_maximum_waits_for_boot(open_host, host_xml):
    m = open_host(host_xml([domain_xml("vm", state="running", vcpus=2, memory_mib=1024)]))
    result = resources.edit_resources(m, "vm", 6, 4096)
    vc, mem = result.changes
    assert not vc.live and "maximum vCPUs raised from 2" in vc.reason
    assert not mem.live and "above the running maximum of 1024 MiB" in mem.reason
    assert m.conn.lookupByName("vm").info()[3] == 2  # still 2 now
    assert resources.vcpu_limits(inactive(m, "vm")) == resources.VcpuLimits(6, 6)


def test_live_refusal_becomes_next_boot(open_host, host_xml, fake_error, monkeypatch):
    """The test driver never refuses live vCPU changes; QEMU does (no hot-unplug). Simulated."""
    m = open_host(host_xml([domain_xml("vm", state="running", vcpus=4, memory_mib=1024)]))

    def refuse(self, n, flags):
        raise fake_error(libvirt.VIR_ERR_OPERATION_UNSUPPORTED, "vcpu unplug is not supported\nby this QEMU")

    monkeypatch.setattr(libvirt.virDomain, "setVcpusFlags", refuse)
    (vc,) = resources.edit_resources(m, "vm", 2, 1024).changes
    assert (vc.live, vc.reason) == (False, "vcpu unplug is not supported")
    assert resources.vcpu_limits(inactive(m, "vm")).current == 2  # defined anyway


def test_nothing_to_change(open_host, host_xml):
    m = open_host(host_xml([domain_xml("vm", state="shutoff", vcpus=2, memory_mib=1024)]))
    result = resources.edit_resources(m, "vm", 2, 1024)
    assert result.changes == () and result.summary() == "nothing changed"


@pytest.mark.parametrize("vcpus, memory, message", [
    (0, 1024, "vCPUs must be"),
    (17, 1024, "more than this host has \\(16\\)"),
    (2, 63, "at least 64 MiB"),
    (2, 64 * 1024 + 1, "more memory than this host has"),
    (True, 1024, "vCPUs must be"),
])
def test_out_of_range_refused_before_define(open_host, host_xml, vcpus, memory, message):
    m = open_host(host_xml([domain_xml("vm", state="shutoff", vcpus=2, memory_mib=1024)]))
    before = inactive(m, "vm")
    with pytest.raises(ValidationError, match=message):
        resources.edit_resources(m, "vm", vcpus, memory)
    assert inactive(m, "vm") == before


def test_transient_vm_refused(open_host, host_xml):
    m = open_host(host_xml([domain_xml("t", state="running", transient=True)]))
    with pytest.raises(ValidationError, match="transient"):
        resources.edit_resources(m, "t", 2, 1024)


def test_host_limit_uses_hypervisor_maximum(open_host, host_xml):
    """Host has 64 CPUs but the test driver's getMaxVcpus is 32: the lower one wins."""
    m = open_host(host_xml([domain_xml("vm", state="shutoff")], cpus=(1, 1, 32, 2)))
    assert m.conn.getMaxVcpus(None) == 32
    with pytest.raises(ValidationError, match="\\(32\\)"):
        resources.edit_resources(m, "vm", 33, 1024)
    resources.edit_resources(m, "vm", 32, 1024)


def test_unexpected_live_failure_is_reported(open_host, host_xml, fake_error, monkeypatch):
    """A live failure that is not a "cannot do this now" refusal surfaces as VirtError, and
    says the definition was saved (it was)."""
    from hyperconsole.virt.errors import VirtError

    m = open_host(host_xml([domain_xml("vm", state="running", vcpus=4, memory_mib=1024)]))

    def broken(self, n, flags):
        raise fake_error(libvirt.VIR_ERR_SYSTEM_ERROR, "cannot open /dev/kvm: Permission denied")

    monkeypatch.setattr(libvirt.virDomain, "setVcpusFlags", broken)
    with pytest.raises(VirtError, match="saved the new size of vm, but the live change failed: cannot open"):
        resources.edit_resources(m, "vm", 2, 1024)
    assert resources.vcpu_limits(inactive(m, "vm")).current == 2
