"""Preflight: is this machine fit to be a virtualisation host? PASS / WARN / FAIL, each with why.

Minimums follow Harvester's split: below the testing minimum is FAIL, below the production
minimum WARN. Every check reads one place under `root` (the host's /, or a tree a test builds),
and a check that cannot read its source says so (WARN) rather than guessing.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from hyperconsole.host.interfaces import InterfaceInfo
from hyperconsole.names import human_size

PASS, WARN, FAIL = "PASS", "WARN", "FAIL"
MIN_CPUS, GOOD_CPUS = 2, 8
MIN_RAM, GOOD_RAM = 4 * 1024**3, 32 * 1024**3
MIN_FREE, GOOD_FREE = 20 * 1024**3, 200 * 1024**3


@dataclass(frozen=True)
class Check:
    id: str
    what: str
    status: str
    why: str


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None


def _cpu_flags(cpuinfo: str) -> set[str]:
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            return set(line.partition(":")[2].split())
    return set()


def cpu_flags(root: Path) -> Check:
    info = _read(root / "proc/cpuinfo")
    if info is None:
        return Check("cpu", "CPU virtualisation", WARN, "/proc/cpuinfo cannot be read")
    flags = _cpu_flags(info)
    if "vmx" in flags:
        return Check("cpu", "CPU virtualisation", PASS, "Intel VT-x (vmx)")
    if "svm" in flags:
        return Check("cpu", "CPU virtualisation", PASS, "AMD-V (svm)")
    return Check("cpu", "CPU virtualisation", FAIL, "no vmx or svm flag: VMs run only emulated (slow)")


def kvm_device(root: Path) -> Check:
    dev = root / "dev/kvm"
    if not dev.exists():
        return Check("kvm", "/dev/kvm", FAIL, "missing: the kvm module is not loaded or virtualisation is off in the firmware")
    return Check("kvm", "/dev/kvm", PASS, "present")


def iommu(root: Path) -> Check:
    groups = root / "sys/kernel/iommu_groups"
    count = len(list(groups.iterdir())) if groups.is_dir() else 0
    if count:
        return Check("iommu", "IOMMU", PASS, f"{count} IOMMU groups: PCI passthrough possible")
    return Check("iommu", "IOMMU", WARN, "no IOMMU groups: no PCI passthrough (enable VT-d/AMD-Vi and intel_iommu=on)")


def _minimum(ident: str, what: str, have: int | None, low: int, good: int, show) -> Check:
    if have is None:
        return Check(ident, what, WARN, "cannot be read")
    if have < low:
        return Check(ident, what, FAIL, f"{show(have)}; at least {show(low)} needed (testing minimum)")
    if have < good:
        return Check(ident, what, WARN, f"{show(have)}; {show(good)} recommended for production")
    return Check(ident, what, PASS, f"{show(have)}")


def memory(root: Path) -> Check:
    info = _read(root / "proc/meminfo") or ""
    total = next((int(line.split()[1]) * 1024 for line in info.splitlines() if line.startswith("MemTotal:")), None)
    return _minimum("ram", "Memory", total, MIN_RAM, GOOD_RAM, human_size)


def cpus(root: Path) -> Check:
    info = _read(root / "proc/cpuinfo")
    count = sum(1 for line in info.splitlines() if line.startswith("processor")) if info else None
    return _minimum("cpus", "CPUs", count, MIN_CPUS, GOOD_CPUS, lambda n: f"{n} CPUs")


def disk_space(root: Path, pool_path: str) -> Check:
    """Free space where the default pool will live (its nearest existing parent)."""
    where = root / pool_path.lstrip("/")
    while not where.exists() and where != where.parent:
        where = where.parent
    try:
        free = shutil.disk_usage(where).free
    except OSError:
        free = None
    check = _minimum("disk", f"Free space for {pool_path}", free, MIN_FREE, GOOD_FREE, human_size)
    return Check(check.id, check.what, check.status, f"{check.why} on the filesystem of {'/' + str(where.relative_to(root))}")


def nics(interfaces: Sequence[InterfaceInfo] | None) -> Check:
    if interfaces is None:
        return Check("nics", "Network interfaces", WARN, "cannot be read (ip failed)")
    physical = [i for i in interfaces if i.kind in ("physical", "bond")]
    if not physical:
        return Check("nics", "Network interfaces", FAIL, "no physical NIC found")
    parts = []
    for nic in sorted(physical, key=lambda i: (i.carrier is not True, i.name)):
        link = "link" if nic.carrier else "no link"
        speed = f" {nic.speed_mbps} Mb/s" if nic.carrier and nic.speed_mbps and nic.speed_mbps > 0 else ""
        parts.append(f"{nic.name} ({link}{speed})")
    up = [i for i in physical if i.carrier]
    return Check("nics", "Network interfaces", PASS if up else FAIL,
                 ", ".join(parts) + ("" if up else ": none has link"))


def nested(root: Path, detect: str | None = None) -> Check:
    """Whether this host itself is a VM: systemd-detect-virt, else the cpuinfo hypervisor flag."""
    tool = detect if detect is not None else (shutil.which("systemd-detect-virt") if root == Path("/") else None)
    kind = None
    if tool:
        try:
            done = subprocess.run([tool, "--vm"], capture_output=True, text=True, timeout=10, check=False)
            kind = done.stdout.strip() if done.returncode == 0 else "none"
        except (OSError, subprocess.TimeoutExpired):
            kind = None
    if kind is None:
        info = _read(root / "proc/cpuinfo") or ""
        kind = "a hypervisor (cpuinfo)" if "hypervisor" in _cpu_flags(info) else "none"
    if kind == "none":
        return Check("nested", "Running on bare metal", PASS, "not inside a VM")
    return Check("nested", "Running on bare metal", WARN, f"inside a VM ({kind}): guests run nested, slower")


def nixos_version(root: Path) -> Check:
    release = _read(root / "etc/os-release") or ""
    fields = dict(line.split("=", 1) for line in release.splitlines() if "=" in line)
    if fields.get("ID", "").strip('"') != "nixos":
        return Check("nixos", "NixOS", FAIL, f"this is {fields.get('PRETTY_NAME', 'not NixOS').strip(chr(34))}, not NixOS")
    return Check("nixos", "NixOS", PASS, f"NixOS {fields.get('VERSION_ID', '?').strip(chr(34))}")


def config_kind(nixos_dir: Path) -> Check:
    if (nixos_dir / "flake.nix").exists():
        return Check("flake", "Configuration", PASS, f"flake ({nixos_dir}/flake.nix): add ./hyperconsole to its modules once")
    if (nixos_dir / "configuration.nix").exists():
        return Check("flake", "Configuration", PASS, f"channels ({nixos_dir}/configuration.nix)")
    return Check("flake", "Configuration", FAIL, f"{nixos_dir} has neither configuration.nix nor flake.nix")


def fragments_imported(imported: bool | None) -> Check:
    if imported:
        return Check("import", "Fragments imported", PASS, "the configuration imports ./hyperconsole")
    if imported is None:
        return Check("import", "Fragments imported", FAIL, "no configuration.nix or flake.nix to import them")
    return Check("import", "Fragments imported", WARN,
                 "not yet: the wizard adds ./hyperconsole to configuration.nix on apply (answer add_import)")


def run_all(nixos_dir: Path, interfaces: Sequence[InterfaceInfo] | None, *, root: Path = Path("/"),
            pool_path: str = "/var/lib/libvirt/images", detect: str | None = None) -> list[Check]:
    """Every check (blocking: run it off the UI thread)."""
    from hyperconsole.setup.run import configuration_imports

    return [
        cpu_flags(root), kvm_device(root), iommu(root), memory(root), cpus(root),
        disk_space(root, pool_path), nics(interfaces), nested(root, detect), nixos_version(root),
        config_kind(nixos_dir), fragments_imported(configuration_imports(nixos_dir)),
    ]


def worst(checks: Sequence[Check]) -> str:
    statuses = {c.status for c in checks}
    return FAIL if FAIL in statuses else WARN if WARN in statuses else PASS

