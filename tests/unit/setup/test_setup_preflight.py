"""Preflight on host trees built from real files, run by the doctor's runner: each check's
PASS / WARN / FAIL / SKIP, its reason and hint; the checks the doctor has too are the doctor's."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from hyperconsole import doctor
from hyperconsole.config import Config
from hyperconsole.doctor import Status
from hyperconsole.setup import preflight as P
from tests.unit.doctor.conftest import write_command
from tests.unit.setup.conftest import nic


def _root(tmp_path: Path, *, flags="fpu vmx sse2", cpus=8, mem_kib=64 * 1024 * 1024, kvm=True, groups=3,
          os_release='ID=nixos\nVERSION_ID="25.05"\nVERSION_CODENAME=warbler\nPRETTY_NAME="NixOS 25.05"\n') -> Path:
    root = tmp_path / "root"
    (root / "proc").mkdir(parents=True)
    (root / "proc/cpuinfo").write_text("".join(f"processor\t: {n}\nflags\t\t: {flags}\n\n" for n in range(cpus)))
    (root / "proc/meminfo").write_text(f"MemTotal:       {mem_kib} kB\nMemFree: 1 kB\n")
    (root / "dev").mkdir()
    if kvm:  # a real character device anyone may open
        (root / "dev/kvm").symlink_to("/dev/null")
    for n in range(groups):
        (root / f"sys/kernel/iommu_groups/{n}").mkdir(parents=True)
    (root / "etc").mkdir()
    (root / "etc/os-release").write_text(os_release)
    return root


def _run(tmp_path, nixos_dir, interfaces, root, *, bindir=None, **kw):
    bindir = bindir or tmp_path / "no-tools"
    bindir.mkdir(exist_ok=True)
    results = P.run_all(Config(nixos_dir=str(nixos_dir)), interfaces, root=root, env={"PATH": str(bindir)}, **kw)
    return {r.id: r for r in results}


def test_the_shared_checks_are_the_doctors():
    ids = [c.id for c in P.checks(())]
    shared = [i for i in ids if not i.startswith("setup.")]
    assert shared == ["virt.cpu", "virt.kvm", "virt.iommu", "virt.nested", "nixos.version"]
    registry = {c.id: c for c in doctor.CHECKS}
    assert all(c is registry[c.id] for c in P.checks(()) if c.id in shared)


def test_a_good_host_passes(tmp_path, nixos_dir):
    root = _root(tmp_path)
    checks = _run(tmp_path, nixos_dir, (nic("eno1", speed=10000), nic("eno2", carrier=False)), root)
    assert checks["virt.cpu"].why == "the CPU has hardware virtualisation (Intel VT-x, vmx)"
    assert checks["virt.kvm"].status is Status.PASS and checks["virt.iommu"].why.startswith("IOMMU enabled (3 groups)")
    assert checks["setup.memory"].why == "memory: 64.0 GiB" and checks["setup.cpus"].why == "CPUs: 8"
    assert checks["setup.nics"].why == "NICs: eno1 (link, 10000 Mb/s), eno2 (no link)"
    assert checks["virt.nested"].why == "bare metal: not running inside a VM"
    assert checks["nixos.version"].why == "NixOS 25.05 (warbler)"
    assert checks["setup.config"].why.startswith("channels")
    imported = checks["setup.imports"]
    assert (imported.status, imported.hint) == (Status.WARN, "the wizard adds it on apply (Add the import: yes)")
    assert doctor.exit_code(list(checks.values())) == 1  # warnings only


def test_a_weak_nested_host_says_why(tmp_path, nixos_dir):
    root = _root(tmp_path, flags="fpu sse2 hypervisor", cpus=1, mem_kib=2 * 1024 * 1024, kvm=False, groups=0,
                 os_release='ID=debian\nPRETTY_NAME="Debian GNU/Linux 12"\n')
    checks = _run(tmp_path, nixos_dir, (nic("eno1", carrier=False),), root)
    assert checks["virt.cpu"].status is Status.FAIL and "no vmx or svm flag" in checks["virt.cpu"].why
    assert checks["virt.kvm"].status is Status.FAIL and checks["virt.iommu"].status is Status.WARN
    assert checks["setup.memory"].why == "memory: 2.0 GiB; at least 4.0 GiB needed (testing minimum)"
    assert checks["setup.cpus"].why == "CPUs: 1; at least 2 needed (testing minimum)"
    assert checks["setup.nics"].status is Status.FAIL and checks["setup.nics"].why.endswith("none has link")
    assert checks["virt.nested"].why == "running inside a VM (a hypervisor flag in cpuinfo): guests run nested, slower"
    assert checks["nixos.version"].why.startswith("this is Debian GNU/Linux 12, not NixOS")
    assert doctor.exit_code(list(checks.values())) == 2


def test_production_minimum_is_a_warning_and_unreadable_is_a_skip(tmp_path, nixos_dir):
    root = _root(tmp_path, cpus=4, mem_kib=8 * 1024 * 1024, flags="svm")
    checks = _run(tmp_path, nixos_dir, None, root)
    assert checks["virt.cpu"].why == "the CPU has hardware virtualisation (AMD-V, svm)"
    assert checks["setup.memory"].why == "memory: 8.0 GiB; 32.0 GiB recommended for production"
    assert checks["setup.nics"].status is Status.SKIP
    (root / "proc/meminfo").unlink()
    assert _run(tmp_path, nixos_dir, None, root)["setup.memory"].status is Status.SKIP


def test_free_space_where_the_pool_will_live(tmp_path):
    outcome = P.disk_space("/var/lib/libvirt/images", tmp_path)  # nothing below tmp_path: its own file system
    assert outcome.why.startswith("free space for /var/lib/libvirt/images: ") and outcome.why.endswith("(file system of /)")
    (tmp_path / "var").mkdir()
    assert P.disk_space("/var/lib/libvirt/images", tmp_path).why.endswith("(file system of /var)")


@pytest.mark.parametrize("files, status, why", [
    ({"flake.nix": "{ }"}, Status.PASS, "a flake ("),
    ({"configuration.nix": "{ imports = [ ./hyperconsole ]; }"}, Status.PASS, "channels"),
    ({}, Status.FAIL, "has neither"),
])
def test_configuration_kind_and_import(tmp_path, files, status, why):
    d = tmp_path / "n"
    d.mkdir()
    for name, text in files.items():
        (d / name).write_text(text)
    checks = _run(tmp_path, d, (), _root(tmp_path, kvm=False))
    assert checks["setup.config"].status is status and why in checks["setup.config"].why
    imported = checks["setup.imports"]
    if "configuration.nix" in files:
        assert imported.status is Status.PASS
    elif files:  # a flake: the wizard cannot edit it
        assert (imported.status, imported.hint) == (Status.WARN, "add ./hyperconsole to the flake's modules")
    else:
        assert imported.status is Status.WARN and "neither configuration.nix nor flake.nix" in imported.why


def test_systemd_detect_virt_is_asked_first(tmp_path, nixos_dir):
    root = _root(tmp_path, flags="vmx", kvm=False)
    bindir = tmp_path / "bin"
    write_command(bindir, "systemd-detect-virt", 'echo kvm')
    checks = _run(tmp_path, nixos_dir, (), root, bindir=bindir)
    assert checks["virt.nested"].why == "running inside a VM (kvm): guests run nested, slower"
    write_command(bindir, "systemd-detect-virt", 'echo none; exit 1')
    assert _run(tmp_path, nixos_dir, (), root, bindir=bindir)["virt.nested"].status is Status.PASS


def test_a_hanging_probe_is_reported_as_timed_out(tmp_path, nixos_dir):
    bindir = tmp_path / "bin"
    write_command(bindir, "systemd-detect-virt", f"exec {shutil.which('sleep')} 60")
    nested = doctor.select(P.checks(()), ["virt.nested"])[0]
    ctx = P.context(Config(nixos_dir=str(nixos_dir)), root=_root(tmp_path, kvm=False), env={"PATH": str(bindir)})
    try:
        (result,) = doctor.run_checks([doctor.Check(nested.id, nested.what, nested.run, timeout=1.0)], ctx)
    finally:
        ctx.close()
    assert result.status is Status.FAIL and result.why.startswith("timed out")
