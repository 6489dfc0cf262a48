"""Host checks on real inputs: this machine's /proc, /sys and /dev, real character devices made
with mknod, a small tmpfs filled nearly full, real generation links, the kernel's adjtimex. Where
this machine has no systemd (no failed units, no journal) the check reads recorded `systemctl` and
`journalctl` output from a stand-in command: those tests say `recorded` in their names."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from hyperconsole.doctor import hostchecks
from hyperconsole.doctor.model import Status
from tests.unit.doctor.conftest import run_one, write_command

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="mknod and mount need root")


def test_cpu_flags_read_from_this_machine(make_ctx):
    result = run_one(make_ctx(), "virt.cpu")
    flags = Path("/proc/cpuinfo").read_text()
    has = " vmx" in flags or " svm" in flags
    assert result.status is (Status.PASS if has else Status.FAIL), result
    if not has:
        assert "TCG" in result.why and "VT-x" in result.hint


def test_cpu_flags_in_a_recorded_cpuinfo(make_ctx, tmp_path):
    (tmp_path / "proc").mkdir()
    (tmp_path / "proc/cpuinfo").write_text("processor\t: 0\nflags\t\t: fpu vme de pse vmx ept\n")
    assert run_one(make_ctx(proc=tmp_path / "proc"), "virt.cpu").why == "the CPU has hardware virtualisation (Intel VT-x, vmx)"
    (tmp_path / "proc/cpuinfo").write_text("processor\t: 0\nprocessor\t: 1\nflags\t\t: fpu svm\n")
    ctx = make_ctx(proc=tmp_path / "proc")
    assert hostchecks.cpuinfo(ctx) == ({"fpu", "svm"}, 2)
    assert run_one(ctx, "virt.cpu").why == "the CPU has hardware virtualisation (AMD-V, svm)"


def test_nested_on_this_machine(make_ctx):
    """systemd-detect-virt where this machine has it, else the hypervisor flag of its cpuinfo."""
    result = run_one(make_ctx(fake_first=False), "virt.nested")
    tool = shutil.which("systemd-detect-virt")
    if tool:
        done = subprocess.run([tool, "--vm"], capture_output=True, text=True, timeout=10, check=False)
        inside = done.returncode == 0 and done.stdout.strip() != "none"
    else:
        inside = "hypervisor" in hostchecks.cpuinfo(make_ctx())[0]
    assert result.status is (Status.WARN if inside else Status.PASS), result


def test_nested_recorded_detect_virt_and_cpuinfo(make_ctx, bindir, tmp_path):
    (tmp_path / "proc").mkdir()
    (tmp_path / "proc/cpuinfo").write_text("processor\t: 0\nflags\t\t: fpu vmx hypervisor\n")
    write_command(bindir, "systemd-detect-virt", "echo microsoft")
    assert run_one(make_ctx(proc=tmp_path / "proc"), "virt.nested").why.startswith("running inside a VM (microsoft)")
    write_command(bindir, "systemd-detect-virt", "echo none; exit 1")
    assert run_one(make_ctx(proc=tmp_path / "proc"), "virt.nested").status is Status.PASS
    ctx = make_ctx(proc=tmp_path / "proc", env={"PATH": str(tmp_path / "nowhere")})  # no tool: the flag
    result = run_one(ctx, "virt.nested")
    assert (result.status, result.why) == (Status.WARN, "running inside a VM (a hypervisor flag in cpuinfo): "
                                                        "guests run nested, slower")


@needs_root
def test_devices_real_character_devices(make_ctx, tmp_path):
    dev = tmp_path / "dev"
    (dev / "net").mkdir(parents=True)
    os.mknod(dev / "kvm", 0o660 | stat.S_IFCHR, os.makedev(10, 232))
    os.mknod(dev / "net/tun", 0o666 | stat.S_IFCHR, os.makedev(10, 200))
    (dev / "vhost-net").write_text("not a device")
    ctx = make_ctx(dev=dev)
    assert run_one(ctx, "virt.kvm").status is Status.PASS
    assert run_one(ctx, "virt.tun").status is Status.PASS
    vhost = run_one(ctx, "virt.vhost-net")
    assert vhost.status is Status.FAIL and "not a character device" in vhost.why
    (dev / "vhost-net").unlink()
    vhost = run_one(ctx, "virt.vhost-net")
    assert vhost.status is Status.WARN and 'boot.kernelModules = [ "vhost_net" ];' == vhost.hint
    os.unlink(dev / "kvm")
    assert run_one(ctx, "virt.kvm").status is Status.FAIL


def test_devices_on_this_machine(make_ctx):
    for check, name in (("virt.kvm", "/dev/kvm"), ("virt.tun", "/dev/net/tun"), ("virt.vhost-net", "/dev/vhost-net")):
        result = run_one(make_ctx(), check)
        if os.access(name, os.R_OK | os.W_OK):
            assert result.status is Status.PASS
        elif not os.path.exists(name):
            assert result.status in (Status.WARN, Status.FAIL) and "does not exist" in result.why
        assert name in result.why


def test_cgroups_of_this_machine(make_ctx):
    result = run_one(make_ctx(), "virt.cgroups")
    version = "v2" if Path("/sys/fs/cgroup/cgroup.controllers").exists() else "v1"
    assert f"cgroup {version}" in result.why and result.status in (Status.PASS, Status.WARN)


def test_cgroups_v2_missing_controllers(make_ctx, tmp_path):
    (tmp_path / "sys/fs/cgroup").mkdir(parents=True)
    (tmp_path / "sys/fs/cgroup/cgroup.controllers").write_text("cpuset cpu pids\n")
    result = run_one(make_ctx(sys=tmp_path / "sys"), "virt.cgroups")
    assert result.status is Status.WARN and "io, memory" in result.why


def test_iommu(make_ctx, tmp_path):
    groups = tmp_path / "sys/kernel/iommu_groups"
    groups.mkdir(parents=True)
    assert run_one(make_ctx(sys=tmp_path / "sys"), "virt.iommu").status is Status.WARN
    (groups / "0").mkdir()
    assert run_one(make_ctx(sys=tmp_path / "sys"), "virt.iommu").why.startswith("IOMMU enabled (1 groups)")


@pytest.fixture
def small_tmpfs(tmp_path):
    mount = tmp_path / "fs"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {done.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", str(mount)], check=True)


def _fill(mount: Path, free_percent: float) -> None:
    for f in mount.iterdir():
        f.unlink()
    total = os.statvfs(mount).f_blocks * os.statvfs(mount).f_frsize
    (mount / "fill").write_bytes(b"\0" * int(total * (100 - free_percent) / 100))


@needs_root
def test_free_space_on_a_nearly_full_tmpfs(small_tmpfs):
    for free, status in ((50, Status.PASS), (10, Status.WARN), (2, Status.FAIL)):
        _fill(small_tmpfs, free)
        result = hostchecks._space(small_tmpfs, "test fs", "clean up")
        assert result.status is status, (free, result)
        assert result.hint == ("" if status is Status.PASS else "clean up")


def test_root_space_on_this_machine(make_ctx):
    result = run_one(make_ctx(), "host.root-space")
    assert result.why.startswith("root file system (/)") and "free of" in result.why


def test_generations_from_real_profile_links(make_ctx, tmp_path):
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    for n in range(1, 4):
        (tmp_path / f"sys{n}").mkdir()
        os.symlink(tmp_path / f"sys{n}", profiles / f"system-{n}-link")
    os.symlink("system-3-link", profiles / "system")
    result = run_one(make_ctx(), "host.generations")
    assert result.status is Status.PASS and result.why.startswith("3 system generations")
    for n in range(4, hostchecks.MANY_GENERATIONS + 2):
        os.symlink(tmp_path / "sys1", profiles / f"system-{n}-link")
    assert run_one(make_ctx(), "host.generations").status is Status.WARN


def test_generations_skip_without_profiles(make_ctx):
    assert run_one(make_ctx(), "host.generations").status is Status.SKIP


RECORDED_FAILED = json.dumps([
    {"unit": "restic-backups-vm.service", "load": "loaded", "active": "failed", "sub": "failed",
     "description": "restic backup vm"},
    {"unit": "nix-gc.service", "load": "loaded", "active": "failed", "sub": "failed", "description": "Nix GC"},
])
RECORDED_FAILED_PLAIN = "● nix-gc.service loaded failed failed Nix Garbage Collector\n"


def test_failed_units_recorded_systemctl_json(make_ctx, bindir):
    write_command(bindir, "systemctl", f"cat <<'EOF'\n{RECORDED_FAILED}\nEOF")
    result = run_one(make_ctx(systemd=True), "host.failed-units")
    assert result.status is Status.FAIL
    assert result.why == "2 failed systemd units: restic-backups-vm.service, nix-gc.service"
    assert "restic backup vm" in result.detail
    write_command(bindir, "systemctl", "echo '[]'")
    assert run_one(make_ctx(systemd=True), "host.failed-units").status is Status.PASS


def test_failed_units_recorded_plain_table_of_an_older_systemd():
    assert hostchecks.parse_failed_units(RECORDED_FAILED_PLAIN) == [("nix-gc.service", "Nix Garbage Collector")]


def test_failed_units_skipped_where_systemd_does_not_run(make_ctx):
    result = run_one(make_ctx(systemd=False), "host.failed-units")
    assert result.status is Status.SKIP and "systemd is not running" in result.why


@pytest.mark.skipif(not Path("/run/systemd/system").is_dir(), reason="systemd does not run on this machine")
def test_failed_units_with_a_real_failed_transient_unit(make_ctx):
    unit = f"hc-doctor-fail-{os.getpid()}"
    subprocess.run(["systemd-run", "--unit", unit, "false"], check=True)
    try:
        result = run_one(make_ctx(fake_first=False), "host.failed-units")
        assert f"{unit}.service" in result.detail
    finally:
        subprocess.run(["systemctl", "reset-failed", f"{unit}.service"], check=False)


RECORDED_JOURNAL = "\n".join(json.dumps(e) for e in [
    {"SYSLOG_IDENTIFIER": "libvirtd", "_SYSTEMD_UNIT": "libvirtd.service", "PRIORITY": "3",
     "MESSAGE": "internal error: Failed to start network default"},
    {"SYSLOG_IDENTIFIER": "kernel", "PRIORITY": "3", "MESSAGE": "unrelated"},
    {"_COMM": "qemu-system-x86", "PRIORITY": "3", "MESSAGE": [113, 101, 109, 117, 255]},
])


def test_journal_recorded_journalctl_output(make_ctx, bindir):
    write_command(bindir, "journalctl", f"cat <<'EOF'\n{RECORDED_JOURNAL}\nEOF")
    result = run_one(make_ctx(systemd=True), "host.journal")
    assert result.status is Status.WARN and result.why.startswith("2 libvirt/QEMU errors")
    assert result.detail.splitlines() == ["libvirtd: internal error: Failed to start network default",
                                          "qemu-system-x86: qemu\ufffd"]


def test_journal_on_this_machine(make_ctx):
    result = run_one(make_ctx(), "host.journal")
    if not Path("/run/systemd/system").is_dir():
        assert result.status is Status.SKIP and "no journal" in result.why
    else:
        assert result.status in (Status.PASS, Status.WARN)


def test_time_from_the_kernel(make_ctx):
    synced = hostchecks.kernel_clock_synchronised()
    result = run_one(make_ctx(systemd=False), "host.time")
    assert "adjtimex" in result.why
    assert result.status is {True: Status.PASS, False: Status.WARN, None: Status.SKIP}[synced]


def test_time_recorded_timedatectl(make_ctx, bindir):
    write_command(bindir, "timedatectl", "printf 'NTP=yes\\nNTPSynchronized=no\\n'")
    result = run_one(make_ctx(systemd=True), "host.time")
    assert result.status is Status.WARN and "NTP is on but not synchronised yet" in result.why
    write_command(bindir, "timedatectl", "printf 'NTP=yes\\nNTPSynchronized=yes\\n'")
    assert run_one(make_ctx(systemd=True), "host.time").status is Status.PASS


def test_hostname_resolves_on_this_machine(make_ctx):
    result = run_one(make_ctx(), "host.hostname")
    assert result.status is Status.PASS, result
    assert "an address of this host" in result.why
