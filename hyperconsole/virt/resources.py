"""VM resources: vCPUs and memory. Edits follow virt-manager: read the INACTIVE XML → change
it → defineXML; live changes are tried afterwards and reported as applied live or "at next boot".

Contract: see calls.py.
"""

from __future__ import annotations

import difflib
import logging
import xml.etree.ElementTree as ET
from dataclasses import dataclass

import libvirt

from hyperconsole.errors import ValidationError
from hyperconsole.virt import errors as verrors
from hyperconsole.virt import xmlmodel
from hyperconsole.virt.calls import calling, Target
from hyperconsole.virt.domains import XML_INACTIVE_SECURE, domain, state_of
from hyperconsole.virt.errors import VirtError
from hyperconsole.virt.models import DomainState

log = logging.getLogger(__name__)

MIN_MEMORY_MIB = 64
KIB_PER_MIB = 1024

# Live-change failures that mean "the hypervisor cannot do this now", i.e. "at next boot".
_LIVE_REFUSALS = {
    libvirt.VIR_ERR_NO_SUPPORT,
    libvirt.VIR_ERR_ARGUMENT_UNSUPPORTED,
    libvirt.VIR_ERR_INVALID_ARG,
    libvirt.VIR_ERR_OPERATION_INVALID,
    libvirt.VIR_ERR_OPERATION_UNSUPPORTED,
    libvirt.VIR_ERR_CONFIG_UNSUPPORTED,
    libvirt.VIR_ERR_OPERATION_FAILED,
    libvirt.VIR_ERR_INTERNAL_ERROR,
}


@dataclass(frozen=True)
class ResourceChange:
    what: str  # "vcpus" | "memory"
    old: int
    new: int
    live: bool  # applied to the running VM now (it is in the config as well)
    reason: str = ""  # why it waits for the next boot

    @property
    def label(self) -> str:
        unit = " MiB" if self.what == "memory" else ""
        when = "now" if self.live else "at next boot"
        text = f"{self.what} {self.old}{unit} → {self.new}{unit} {when}"
        return f"{text} ({self.reason})" if self.reason and not self.live else text


@dataclass(frozen=True)
class EditResult:
    changes: tuple[ResourceChange, ...]
    xml_diff: str  # unified diff of the inactive XML, for the log

    @property
    def at_next_boot(self) -> tuple[ResourceChange, ...]:
        return tuple(c for c in self.changes if not c.live)

    def summary(self) -> str:
        return "; ".join(c.label for c in self.changes) or "nothing changed"


def host_limits(conn, manager, domain_type: str | None = None) -> tuple[int, int]:
    """(max vCPUs, memory MiB) of the host: logical CPUs, capped by the hypervisor's own limit."""
    with calling(manager, "read host limits"):
        info = conn.getInfo()
    cpus, memory_mib = int(info[2]), int(info[1])
    try:
        hv_max = conn.getMaxVcpus(domain_type)
        if hv_max > 0:
            cpus = min(cpus, hv_max)
    except libvirt.libvirtError as exc:
        if manager is not None:
            manager.check_error(exc)
    return cpus, memory_mib


def check_sizes(vcpus: int, memory_mib: int, max_vcpus: int | None = None, host_mib: int | None = None) -> None:
    if not isinstance(vcpus, int) or isinstance(vcpus, bool) or vcpus < 1:
        raise ValidationError(f"vCPUs must be a whole number from 1, not {vcpus!r}")
    if not isinstance(memory_mib, int) or isinstance(memory_mib, bool) or memory_mib < MIN_MEMORY_MIB:
        raise ValidationError(f"memory must be at least {MIN_MEMORY_MIB} MiB, not {memory_mib!r}")
    if max_vcpus is not None and vcpus > max_vcpus:
        raise ValidationError(f"{vcpus} vCPUs is more than this host has ({max_vcpus})")
    if host_mib is not None and memory_mib > host_mib:
        raise ValidationError(f"{memory_mib} MiB is more memory than this host has ({host_mib} MiB)")


def edit_resources(target: Target, ident: str, vcpus: int, memory_mib: int) -> EditResult:
    """Change vCPUs and memory: inactive XML → change → defineXML, then try the same live.

    Live vCPU changes need vCPUs ≤ the running maximum and hypervisor hotplug support; live
    memory is a balloon change up to the running maximum. Whatever cannot apply live is reported
    "at next boot" (the definition already holds it). Raising the vCPU maximum is always next boot.
    Raises ValidationError (range, transient VM), VirtError.
    """
    check_sizes(vcpus, memory_mib)
    conn, manager, dom = domain(target, ident)
    name = dom.name()
    with calling(manager, f"read {name}"):
        persistent = dom.isPersistent()
        xml_before = dom.XMLDesc(XML_INACTIVE_SECURE)
        running = state_of(dom) in (DomainState.RUNNING, DomainState.PAUSED, DomainState.BLOCKED)
    if not persistent:
        raise ValidationError(f"{name} is transient (not defined); it has no configuration to edit")
    dtype = xmlmodel.parse(xml_before, "domain").get("type")
    max_vcpus, host_mib = host_limits(conn, manager, dtype)
    check_sizes(vcpus, memory_mib, max_vcpus, host_mib)

    old = vcpu_limits(xml_before)
    old_mem = memory_mib_of(xml_before)
    xml_after, raised = set_vcpus(xml_before, vcpus)
    xml_after = set_memory(xml_after, memory_mib)
    if old.current == vcpus and old_mem == memory_mib:
        return EditResult((), "")
    with calling(manager, f"save new sizes of {name}"):
        conn.defineXML(xml_after)
    diff = "".join(difflib.unified_diff(xml_before.splitlines(True), xml_after.splitlines(True),
                                        "before", "after"))
    log.info("redefined %s:\n%s", name, diff)

    changes: list[ResourceChange] = []
    if old.current != vcpus:
        live, reason = False, "VM is not running" if not running else ""
        if raised:
            reason = f"maximum vCPUs raised from {old.maximum}"
        elif running:
            live, reason = _try_live(manager, name, lambda: dom.setVcpusFlags(vcpus, libvirt.VIR_DOMAIN_AFFECT_LIVE))
        changes.append(ResourceChange("vcpus", old.current, vcpus, live, reason))
    if old_mem != memory_mib:
        live, reason = False, "VM is not running" if not running else ""
        if running:
            with calling(manager, f"read {name}"):
                live_max_mib = dom.maxMemory() // 1024
            if memory_mib > live_max_mib:
                reason = f"above the running maximum of {live_max_mib} MiB"
            else:
                live, reason = _try_live(manager, name, lambda: dom.setMemoryFlags(
                    memory_mib * 1024, libvirt.VIR_DOMAIN_AFFECT_LIVE))
        changes.append(ResourceChange("memory", old_mem, memory_mib, live, reason))
    return EditResult(tuple(changes), diff)


def _try_live(manager, name: str, call) -> tuple[bool, str]:
    try:
        call()
    except libvirt.libvirtError as exc:
        if manager is not None:
            manager.check_error(exc)
        if verrors.is_connection_lost(exc) or verrors.code(exc) not in _LIVE_REFUSALS:
            raise VirtError(f"saved the new size of {name}, but the live change failed: "
                            f"{verrors.one_line(exc)}") from exc
        return False, verrors.one_line(exc)
    return True, ""



@dataclass(frozen=True)
class VcpuLimits:
    current: int
    maximum: int


def vcpu_limits(xml: str) -> VcpuLimits:
    """Current and maximum vCPUs from `<vcpu current='N'>MAX</vcpu>`."""
    el = xmlmodel.parse(xml, "domain").find("vcpu")
    if el is None:
        return VcpuLimits(1, 1)
    maximum = int((el.text or "").strip() or 1)
    return VcpuLimits(int(el.get("current", maximum)), maximum)


def set_vcpus(xml: str, vcpus: int) -> tuple[str, bool]:
    """Set the vCPU count in an (inactive) domain XML.

    Returns (new XML, maximum_raised). Within the maximum only `current` changes (hot-pluggable
    later); above it the maximum is raised, which only a redefine + boot can apply. A CPU
    topology whose product no longer matches becomes sockets=N, cores=1, threads=1.
    """
    root = xmlmodel.parse(xml, "domain")
    el = root.find("vcpu")
    if el is None:  # libvirt reads elements by name, wherever they stand
        el = ET.SubElement(root, "vcpu", {"placement": "static"})
        el.text = "1"
    maximum = int((el.text or "").strip() or 1)
    raised = vcpus > maximum
    if raised:
        if root.find("vcpus") is not None:
            raise ValidationError("this VM has per-vCPU settings (<vcpus>); raise its maximum with virsh")
        if root.find("cpu/numa") is not None:
            raise ValidationError("this VM has a NUMA layout; raise its vCPU maximum with virsh")
        el.text = str(vcpus)
        el.attrib.pop("current", None)
        topo = root.find("cpu/topology")
        if topo is not None:
            product = 1
            for key in ("sockets", "dies", "clusters", "cores", "threads"):
                product *= int(topo.get(key, "1"))
            if product != vcpus:
                for key in ("dies", "clusters"):
                    if key in topo.attrib:
                        topo.set(key, "1")
                topo.set("sockets", str(vcpus))
                topo.set("cores", "1")
                topo.set("threads", "1")
    elif vcpus == maximum:
        el.attrib.pop("current", None)
    else:
        el.set("current", str(vcpus))
    return xmlmodel.to_string(root), raised


def set_memory(xml: str, memory_mib: int) -> str:
    """Set `<memory>` and `<currentMemory>` (KiB) in an (inactive) domain XML."""
    root = xmlmodel.parse(xml, "domain")
    kib = str(memory_mib * KIB_PER_MIB)
    for tag in ("memory", "currentMemory"):
        el = root.find(tag)
        el = el if el is not None else ET.SubElement(root, tag)  # libvirt reads them wherever they stand
        el.text = kib
        el.set("unit", "KiB")
    return xmlmodel.to_string(root)


def memory_mib_of(xml: str) -> int:
    """`<memory>` in MiB, whatever unit it is written in."""
    mem = xmlmodel.parse(xml, "domain").find("memory")
    if mem is None:
        return 0
    factor = xmlmodel.UNITS.get(mem.get("unit", "KiB").lower(), 1024)
    return int((mem.text or "").strip() or 0) * factor // (1024 * 1024)
