"""Checks of the machine itself: what libvirt's virt-host-validate looks at (read natively from
/proc, /sys and /dev), free space, generations and store size, failed units, the journal, time,
and the host name."""

from __future__ import annotations

import ctypes
import ipaddress
import json
import os
import platform
import socket
import stat
import time
from pathlib import Path

import psutil

from hyperconsole import names
from hyperconsole.doctor.model import (
    Check, CheckTimeout, Context, Outcome, Status, fail, ok, skip, space_status, warn,
)

MODULES_HINT = 'boot.kernelModules = [ "{}" ];'


# -- what virt-host-validate checks -----------------------------------------------------------------
VENDOR_FLAGS = {"vmx": "Intel VT-x, vmx", "svm": "AMD-V, svm"}


def cpuinfo(ctx: Context) -> tuple[set[str], int]:
    """(the CPU flags, the number of processors) from the context's /proc/cpuinfo; raises OSError."""
    flags: set[str] = set()
    count = 0
    for line in (ctx.proc / "cpuinfo").read_text(errors="replace").splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            flags.update(value.split())
        elif key.strip() == "processor":
            count += 1
    return flags, count


def cpu_virtualisation(ctx: Context) -> Outcome:
    try:
        flags, _ = cpuinfo(ctx)
    except OSError as exc:
        return skip(f"cannot read {ctx.proc / 'cpuinfo'}: {exc.strerror}")
    found = sorted(flags & {"vmx", "svm"})
    if found:
        return ok(f"the CPU has hardware virtualisation ({VENDOR_FLAGS[found[0]]})")
    if platform.machine() not in ("x86_64", "i686", "i386") and (ctx.dev / "kvm").exists():
        return ok(f"{platform.machine()}: KVM is present")
    return fail("the CPU offers no hardware virtualisation (no vmx or svm flag): VMs run emulated (TCG), many times slower",
                "enable VT-x/AMD-V in the firmware setup; in a VM, enable nested virtualisation on its host")


def nested(ctx: Context) -> Outcome:
    """Whether this host is itself a VM: systemd-detect-virt where it is on the PATH, else the
    cpuinfo hypervisor flag."""
    kind = None
    if ctx.which("systemd-detect-virt"):
        try:
            done = ctx.command(["systemd-detect-virt", "--vm"])
            kind = done.stdout.strip() if done.returncode == 0 else "none"
        except OSError:
            kind = None
    if kind is None:
        try:
            flags, _ = cpuinfo(ctx)
        except OSError as exc:
            return skip(f"cannot tell: no systemd-detect-virt, and {ctx.proc / 'cpuinfo'}: {exc.strerror}")
        kind = "a hypervisor flag in cpuinfo" if "hypervisor" in flags else "none"
    if kind == "none":
        return ok("bare metal: not running inside a VM")
    return warn(f"running inside a VM ({kind}): guests run nested, slower",
                "fine for testing; for production, run on bare metal (here, the outer host must keep nested virtualisation on)")


def _device(ctx: Context, name: str, missing: Outcome, *, access: int = os.R_OK | os.W_OK) -> Outcome:
    path = ctx.dev / name
    try:
        info = path.stat()
    except FileNotFoundError:
        return missing
    except OSError as exc:
        return fail(f"{path}: {exc.strerror}")
    if not stat.S_ISCHR(info.st_mode):
        return fail(f"{path} exists but is not a character device")
    if os.access(path, access):
        return ok(f"{path} is there and this user can open it")
    group = _group_name(info.st_gid)
    mode = stat.filemode(info.st_mode)
    if ctx.root:
        return ok(f"{path} is there ({mode}, group {group})")
    return warn(f"{path} is there ({mode}, group {group}) but {ctx.user} cannot open it; libvirtd (root) still can",
                f"only needed to run QEMU as {ctx.user} (qemu:///session): users.users.{ctx.user}.extraGroups = [ \"{group}\" ]")


def _group_name(gid: int) -> str:
    import grp

    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def dev_kvm(ctx: Context) -> Outcome:
    return _device(ctx, "kvm", fail(
        f"{ctx.dev / 'kvm'} does not exist: the kvm module is not loaded, VMs run emulated",
        'boot.kernelModules = [ "kvm-intel" ]; (or "kvm-amd"), and virtualisation enabled in the firmware'))


def dev_vhost_net(ctx: Context) -> Outcome:
    return _device(ctx, "vhost-net", warn(
        f"{ctx.dev / 'vhost-net'} does not exist: VM network traffic goes through QEMU's userspace (slower)",
        MODULES_HINT.format("vhost_net")))


def dev_tun(ctx: Context) -> Outcome:
    return _device(ctx, "net/tun", fail(
        f"{ctx.dev / 'net/tun'} does not exist: VMs cannot get a network device (tap)",
        MODULES_HINT.format("tun")))


# Controllers libvirt's QEMU driver uses (virt-host-validate's list); v1 names, with their v2 names.
CGROUP_CONTROLLERS = {"cpu": "cpu", "cpuacct": "cpu", "cpuset": "cpuset", "memory": "memory",
                      "devices": "", "blkio": "io", "pids": "pids"}  # v2 devices: a BPF program, no controller


def cgroup_controllers(ctx: Context) -> Outcome:
    unified = ctx.sys / "fs/cgroup/cgroup.controllers"
    try:
        if unified.exists():
            have = set(unified.read_text().split())
            wanted = {v2 for v2 in CGROUP_CONTROLLERS.values() if v2}
            version = "v2"
        else:
            have = set()
            for line in (ctx.proc / "cgroups").read_text().splitlines()[1:]:
                fields = line.split()
                if len(fields) >= 4 and fields[3] == "1":
                    have.add(fields[0])
            wanted = set(CGROUP_CONTROLLERS)
            version = "v1"
    except OSError as exc:
        return skip(f"cannot read the cgroup controllers: {exc.strerror}")
    missing = sorted(wanted - have)
    if missing:
        return warn(f"cgroup {version} controllers missing: {', '.join(missing)}: VM resource limits on them do not work",
                    "check the kernel command line for cgroup_disable=…")
    return ok(f"cgroup {version}: {', '.join(sorted(wanted))} available")


def iommu(ctx: Context) -> Outcome:
    groups = ctx.sys / "kernel/iommu_groups"
    try:
        count = len(os.listdir(groups))
    except FileNotFoundError:
        count = 0
    except OSError as exc:
        return skip(f"cannot read {groups}: {exc.strerror}")
    if count:
        return ok(f"IOMMU enabled ({count} groups): PCI passthrough possible")
    return warn("IOMMU not enabled: no PCI device can be passed through to a VM",
                'only needed for passthrough: boot.kernelParams = [ "intel_iommu=on" ]; (or "amd_iommu=on")')


# -- host -----------------------------------------------------------------------------------------
def _space(path: Path, what: str, hint: str) -> Outcome:
    try:
        usage = psutil.disk_usage(str(path))
    except FileNotFoundError:
        return skip(f"{path} does not exist")
    except OSError as exc:
        return fail(f"cannot read the free space of {path}: {exc.strerror}")
    free = 100.0 * usage.free / usage.total if usage.total else 0.0
    why = f"{what} ({path}): {names.human_size(usage.free)} free of {names.human_size(usage.total)} ({free:.0f} %)"
    status = space_status(free)
    return Outcome(status, why, hint if status is not Status.PASS else "")


def root_space(ctx: Context) -> Outcome:
    return _space(Path("/"), "root file system", "free space: old logs (journalctl --vacuum-size=…), images in /var/lib/libvirt")


def nix_space(ctx: Context) -> Outcome:
    nix = Path("/nix")
    if not nix.is_dir():
        return skip("no /nix here: not a NixOS or Nix host")
    what = "/nix (on the root file system)" if os.stat(nix).st_dev == os.stat("/").st_dev else "the Nix store's file system"
    return _space(nix, what, "nix-collect-garbage --delete-older-than 30d")


MANY_GENERATIONS = 50


def generations(ctx: Context) -> Outcome:
    from hyperconsole.nixos.rebuild import list_generations

    profiles = Path(ctx.config.system_profile).parent
    if not profiles.is_dir():
        return skip(f"no system profiles in {profiles}: not a NixOS host")
    found = list_generations(profiles)
    if not found:
        return skip(f"no system generations in {profiles}: not a NixOS host")
    store = Path("/nix/store")
    size = ""
    if ctx.which("du") and store.is_dir():
        try:
            done = ctx.command(["du", "-sx", "--block-size=1", str(store)],
                               timeout=ctx.deadline() - time.monotonic() - 1.0)
            size = f", store {names.human_size(int(done.stdout.split()[0]))}" if done.stdout.split() else ""
        except (CheckTimeout, ValueError):
            size = ", store size not measured (du took too long)"
    why = f"{len(found)} system generations{size}"
    if len(found) > MANY_GENERATIONS:
        return warn(why + f": more than {MANY_GENERATIONS} keep old closures alive",
                    "nix.gc.automatic = true; nix.gc.options = \"--delete-older-than 30d\";")
    return ok(why)


def systemd_running(ctx: Context) -> bool:
    return ctx.systemd if ctx.systemd is not None else Path("/run/systemd/system").is_dir()


def _pid1(ctx: Context) -> str:
    try:
        return (ctx.proc / "1/comm").read_text().strip()
    except OSError:
        return "?"


def parse_failed_units(text: str) -> list[tuple[str, str]]:
    """(unit, description) from `systemctl --failed -o json`, or its plain table when the systemd
    is older than JSON output."""
    try:
        data = json.loads(text)
    except ValueError:
        rows = []
        for line in text.splitlines():
            fields = line.replace("●", " ").split(None, 4)
            if len(fields) >= 4 and fields[2] == "failed":
                rows.append((fields[0], fields[4] if len(fields) > 4 else ""))
        return rows
    return [(str(u.get("unit", "?")), str(u.get("description", ""))) for u in data if isinstance(u, dict)]


def failed_units(ctx: Context) -> Outcome:
    if not systemd_running(ctx) or not ctx.which("systemctl"):
        return skip(f"systemd is not running here (PID 1 is {_pid1(ctx)})")
    done = ctx.command(["systemctl", "--failed", "--no-legend", "--no-pager", "-o", "json"])
    if done.returncode != 0 and not done.stdout.strip():
        return fail(f"systemctl --failed: {(done.stderr.strip().splitlines() or ['exit %d' % done.returncode])[0]}")
    units = parse_failed_units(done.stdout)
    if not units:
        return ok("no failed systemd units")
    return fail(f"{len(units)} failed systemd unit{'s' * (len(units) > 1)}: {', '.join(u for u, _ in units[:5])}",
                "journalctl -b -u <unit> says why; systemctl reset-failed <unit> once dealt with",
                detail="\n".join(f"{u}  {d}" for u, d in units))


JOURNAL_GROUPS = {"systemd-journal", "adm", "wheel"}
_VIRT_IDENTS = ("libvirt", "virtqemud", "virtlogd", "virtnetworkd", "virtstoraged", "qemu")


def parse_journal(text: str) -> list[str]:
    """Error lines of libvirt and QEMU from `journalctl -o json` output: `ident: message`."""
    found = []
    for line in text.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        ident = str(entry.get("SYSLOG_IDENTIFIER") or entry.get("_COMM") or "")
        unit = str(entry.get("_SYSTEMD_UNIT") or "")
        if not any(ident.startswith(i) or unit.startswith(i) for i in _VIRT_IDENTS):
            continue
        message = entry.get("MESSAGE", "")
        if isinstance(message, list):  # journald gives non-UTF-8 messages as byte arrays
            message = bytes(b & 0xFF for b in message if isinstance(b, int)).decode("utf-8", "replace")
        found.append(f"{ident or unit}: {message}")
    return found


def journal_errors(ctx: Context) -> Outcome:
    if not ctx.which("journalctl"):
        return skip("no journalctl here")
    if not ctx.root and not ctx.groups() & JOURNAL_GROUPS:
        return skip(f"{ctx.user} cannot read the system journal (not root, not in systemd-journal)",
                    f"users.users.{ctx.user}.extraGroups = [ \"systemd-journal\" ];")
    done = ctx.command(["journalctl", "-b", "-p", "err", "-o", "json", "--no-pager", "-n", "5000"])
    if done.returncode != 0 or "No journal files" in done.stderr:
        reason = (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[0]
        return skip(f"no journal to read: {reason}")
    if not done.stdout.strip() and not systemd_running(ctx):
        return skip(f"no journal to read: systemd is not running here (PID 1 is {_pid1(ctx)})")
    lines = parse_journal(done.stdout)
    if not lines:
        return ok("no libvirt or QEMU errors in the journal since boot")
    return warn(f"{len(lines)} libvirt/QEMU error{'s' * (len(lines) > 1)} in the journal since boot; last: {lines[-1][:120]}",
                "journalctl -b -p err -u libvirtd (or virtqemud) shows them in full", detail="\n".join(lines[-20:]))


TIME_ERROR = 5  # adjtimex: the clock is not synchronised


def kernel_clock_synchronised() -> bool | None:
    """The kernel's view (adjtimex, read-only: modes 0): None when it cannot be asked."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        buffer = ctypes.create_string_buffer(512)  # struct timex, zeroed: modes = 0 reads only
        state = libc.adjtimex(buffer)
    except (OSError, AttributeError):
        return None
    return None if state < 0 else state != TIME_ERROR


def time_sync(ctx: Context) -> Outcome:
    if systemd_running(ctx) and ctx.which("timedatectl"):
        done = ctx.command(["timedatectl", "show", "-p", "NTPSynchronized", "-p", "NTP"])
        values = dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)
        if "NTPSynchronized" in values:
            if values["NTPSynchronized"] == "yes":
                return ok("the clock is synchronised (timedatectl)")
            service = "NTP is on but not synchronised yet" if values.get("NTP") == "yes" else "no NTP service is on"
            return warn(f"the clock is not synchronised: {service}", "services.timesyncd.enable = true; (or chrony)")
    synced = kernel_clock_synchronised()
    if synced is None:
        return skip("cannot ask the kernel whether the clock is synchronised")
    if synced:
        return ok("the kernel's clock is synchronised (adjtimex)")
    return warn("the kernel's clock is not synchronised (adjtimex): TLS, Kerberos and migrations may fail",
                "services.timesyncd.enable = true; (or chrony)")


def local_addresses() -> set[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    found = set()
    for addrs in psutil.net_if_addrs().values():
        for addr in addrs:
            if addr.family in (socket.AF_INET, socket.AF_INET6):
                try:
                    found.add(ipaddress.ip_address(addr.address.split("%")[0]))
                except ValueError:
                    pass
    return found


def hostname_resolves(ctx: Context) -> Outcome:
    name = socket.gethostname()
    try:
        infos = socket.getaddrinfo(name, None, proto=socket.IPPROTO_TCP)
    except socket.gaierror as exc:
        return fail(f"the host name {name} does not resolve: {exc.strerror}",
                    f'networking.hosts."127.0.0.2" = [ "{name}" ]; (NixOS does this unless disabled)')
    addresses = sorted({ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos}, key=str)
    local = local_addresses()
    foreign = [a for a in addresses if not a.is_loopback and a not in local]
    shown = ", ".join(map(str, addresses))
    if foreign:
        return warn(f"{name} resolves to {shown}, and {', '.join(map(str, foreign))} is not an address of this host",
                    "fix /etc/hosts or DNS: libvirt migration and TLS use the host name")
    per_family = {4: 0, 6: 0}
    for address in addresses:
        per_family[address.version] += 1
    if max(per_family.values()) > 1:
        return warn(f"{name} resolves to several addresses of one family ({shown})",
                    "one address per family keeps migration and TLS certificates unambiguous")
    return ok(f"{name} resolves to {shown}, an address of this host")


CHECKS = (
    Check("virt.cpu", "hardware virtualisation in the CPU (vmx/svm)", cpu_virtualisation),
    Check("virt.kvm", "/dev/kvm present and usable", dev_kvm),
    Check("virt.vhost-net", "/dev/vhost-net present", dev_vhost_net),
    Check("virt.tun", "/dev/net/tun present", dev_tun),
    Check("virt.cgroups", "cgroup controllers libvirt uses", cgroup_controllers),
    Check("virt.iommu", "IOMMU enabled (PCI passthrough)", iommu),
    Check("virt.nested", "running on bare metal, not inside a VM", nested),
    Check("host.root-space", "free space on /", root_space),
    Check("host.nix-space", "free space for /nix", nix_space),
    Check("host.generations", "system generations and store size", generations, timeout=30.0),
    Check("host.failed-units", "failed systemd units", failed_units),
    Check("host.journal", "libvirt and QEMU errors in the journal since boot", journal_errors, timeout=15.0),
    Check("host.time", "clock synchronised", time_sync),
    Check("host.hostname", "host name resolves to one local address", hostname_resolves),
)
