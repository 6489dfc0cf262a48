"""Preflight on host trees built from real files: each check's PASS / WARN / FAIL and its reason."""

from __future__ import annotations

from pathlib import Path

import pytest

from hyperconsole.setup import preflight as P
from tests.unit.setup.conftest import nic


def _root(tmp_path: Path, *, flags="fpu vmx sse2", cpus=8, mem_kib=64 * 1024 * 1024, kvm=True, groups=3,
          os_release='ID=nixos\nVERSION_ID="25.05"\nPRETTY_NAME="NixOS 25.05"\n') -> Path:
    root = tmp_path / "root"
    (root / "proc").mkdir(parents=True)
    (root / "proc/cpuinfo").write_text("".join(f"processor\t: {n}\nflags\t\t: {flags}\n\n" for n in range(cpus)))
    (root / "proc/meminfo").write_text(f"MemTotal:       {mem_kib} kB\nMemFree: 1 kB\n")
    (root / "dev").mkdir()
    if kvm:
        (root / "dev/kvm").write_text("")
    for n in range(groups):
        (root / f"sys/kernel/iommu_groups/{n}").mkdir(parents=True)
    (root / "etc").mkdir()
    (root / "etc/os-release").write_text(os_release)
    return root


def _by_id(checks):
    return {c.id: c for c in checks}


def test_a_good_host_passes(tmp_path, nixos_dir):
    root = _root(tmp_path)
    checks = _by_id(P.run_all(nixos_dir, (nic("eno1", speed=10000), nic("eno2", carrier=False)), root=root,
                              detect=""))
    assert checks["cpu"].status == "PASS" and checks["cpu"].why == "Intel VT-x (vmx)"
    assert checks["kvm"].status == "PASS" and checks["iommu"].why.startswith("3 IOMMU groups")
    assert checks["ram"].status == "PASS" and checks["cpus"].status == "PASS"
    assert checks["nics"].why == "eno1 (link 10000 Mb/s), eno2 (no link)"
    assert checks["nested"].status == "PASS" and checks["nixos"].why == "NixOS 25.05"
    assert checks["flake"].why.startswith("channels") and checks["import"].status == "WARN"


def test_a_weak_nested_host_says_why(tmp_path, nixos_dir):
    root = _root(tmp_path, flags="fpu sse2 hypervisor", cpus=1, mem_kib=2 * 1024 * 1024, kvm=False, groups=0,
                 os_release='ID=debian\nPRETTY_NAME="Debian GNU/Linux 12"\n')
    checks = _by_id(P.run_all(nixos_dir, (nic("eno1", carrier=False),), root=root, detect=""))
    assert checks["cpu"] == P.Check("cpu", "CPU virtualisation", "FAIL", "no vmx or svm flag: VMs run only emulated (slow)")
    assert checks["kvm"].status == "FAIL" and checks["iommu"].status == "WARN"
    assert checks["ram"].why == "2.0 GiB; at least 4.0 GiB needed (testing minimum)"
    assert checks["cpus"].why == "1 CPUs; at least 2 CPUs needed (testing minimum)"
    assert checks["nics"].status == "FAIL" and checks["nics"].why.endswith("none has link")
    assert checks["nested"].why == "inside a VM (a hypervisor (cpuinfo)): guests run nested, slower"
    assert checks["nixos"].why == "this is Debian GNU/Linux 12, not NixOS"
    assert P.worst(list(checks.values())) == "FAIL"


def test_production_minimum_is_a_warning(tmp_path, nixos_dir):
    root = _root(tmp_path, cpus=4, mem_kib=8 * 1024 * 1024, flags="svm")
    checks = _by_id(P.run_all(nixos_dir, None, root=root, detect=""))
    assert checks["cpu"].why == "AMD-V (svm)"
    assert checks["ram"].why == "8.0 GiB; 32.0 GiB recommended for production"
    assert checks["nics"].status == "WARN"


@pytest.mark.parametrize("files, status, why", [
    ({"flake.nix": "{ }"}, "PASS", "flake"),
    ({"configuration.nix": "{ imports = [ ./hyperconsole ]; }"}, "PASS", "channels"),
])
def test_configuration_kind_and_import(tmp_path, files, status, why):
    d = tmp_path / "n"
    d.mkdir()
    for name, text in files.items():
        (d / name).write_text(text)
    assert P.config_kind(d).why.startswith(why)
    imported = P.fragments_imported(True if "configuration.nix" in files else False)
    assert imported.status == ("PASS" if "configuration.nix" in files else "WARN")


def test_systemd_detect_virt_is_asked_first(tmp_path, script):
    root = _root(tmp_path, flags="vmx")
    tool = script("systemd-detect-virt", "echo kvm\n")
    assert P.nested(root, str(tool)).why == "inside a VM (kvm): guests run nested, slower"
    none = script("detect-none", "echo none\nexit 1\n")
    assert P.nested(root, str(none)).status == "PASS"
