"""The integration tier's own libvirtd: a real virtlogd + libvirtd (qemu:///system) started as
children of the calling process with their own config, pid and log files, and the tiny TCG domains
the tests and the real-host benchmark run on. Used by tests/integration/conftest.py and
bench/bench_real_host.py; why the host is prepared the way it is is explained there (conftest).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import libvirt

PREFIX = "hcit-"
URI = "qemu:///system"
LIBVIRTD = "/usr/sbin/libvirtd"
VIRTLOGD = "/usr/sbin/virtlogd"
QEMU_USER = "libvirt-qemu"
SOCK = "/run/libvirt/libvirt-sock"
VIRTLOGD_SOCK = "/run/libvirt/virtlogd-sock"
START_TIMEOUT = 60.0


class DaemonError(RuntimeError):
    pass


def _live_pids(comm: str) -> list[int]:
    """PIDs of running (not zombie) processes whose comm is ``comm``."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        state = stat[stat.rindex(")") + 2]
        if name == comm and state != "Z":
            pids.append(int(entry))
    return pids


def hcit_qemu_pids() -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
            state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state == "Z" or not cmd or b"qemu-system" not in cmd[0]:
            continue
        if any(a.startswith(b"guest=" + PREFIX.encode()) for a in cmd):
            pids.append(int(entry))
    return pids


def _socket_answers(path: str) -> bool:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.settimeout(1)
        s.connect(path)
        return True
    except OSError:
        return False
    finally:
        s.close()


def _run(*cmd: str) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60)


def _ensure_qemu_user() -> None:
    if _run("id", "-u", QEMU_USER).returncode == 0:
        return
    r = _run(
        "useradd", "--system", "--user-group", "--no-create-home",
        "--home-dir", "/var/lib/libvirt", "--shell", "/usr/sbin/nologin", QEMU_USER,
    )
    if r.returncode != 0 and _run("id", "-u", QEMU_USER).returncode != 0:
        raise DaemonError(f"cannot create user {QEMU_USER}: {r.stderr.strip()}")


def _fix_kvm_access() -> None:
    """Give libvirt-qemu access to /dev/kvm the way Debian's udev rules do (see top)."""
    if not _kvm_inconsistent():
        return
    if _run("getent", "group", "kvm").returncode != 0:
        _run("groupadd", "--system", "kvm")
    _run("usermod", "-a", "-G", "kvm", QEMU_USER)
    st = os.stat("/dev/kvm")
    if st.st_gid == 0:
        shutil.chown("/dev/kvm", group="kvm")
    os.chmod("/dev/kvm", (st.st_mode & 0o7777) | 0o060)
    if _kvm_inconsistent():
        raise DaemonError("libvirt-qemu still cannot open /dev/kvm; libvirt would re-probe "
                          "QEMU on every start")


def _kvm_inconsistent() -> bool:
    """True when /dev/kvm exists but the QEMU user cannot open it read-write."""
    if not os.path.exists("/dev/kvm"):
        return False
    r = _run("setpriv", f"--reuid={QEMU_USER}", f"--regid={QEMU_USER}", "--init-groups",
             "test", "-r", "/dev/kvm", "-a", "-w", "/dev/kvm")
    return r.returncode != 0


class Libvirtd:
    """Handle on the test-owned libvirtd (+ virtlogd). Not thread-safe; main thread only."""

    uri = URI

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.log = workdir / "libvirtd.log"
        self.stdio = workdir / "libvirtd.stdio"
        self.pidfile = workdir / "libvirtd.pid"
        self.proc: subprocess.Popen | None = None
        self.logd: subprocess.Popen | None = None
        (workdir / "libvirtd.conf").write_text(
            f'log_outputs = "3:file:{self.log}"\n'
            'log_filters = "3:*"\n'
            "keepalive_interval = 5\n"
        )
        (workdir / "virtlogd.conf").write_text(f'log_outputs = "3:file:{workdir}/virtlogd.log"\n')

    # ---------------------------------------------------------------- daemons
    def _start_virtlogd(self) -> None:
        self.logd = subprocess.Popen(
            [VIRTLOGD, "--config", str(self.workdir / "virtlogd.conf"),
             "--pid-file", str(self.workdir / "virtlogd.pid")],
            stdin=subprocess.DEVNULL,
            stdout=open(self.workdir / "virtlogd.stdio", "ab"),
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 15
        while not _socket_answers(VIRTLOGD_SOCK):
            if self.logd.poll() is not None:
                raise DaemonError(f"virtlogd exited with {self.logd.returncode}: "
                                  + self._tail(self.workdir / "virtlogd.stdio"))
            if time.monotonic() > deadline:
                raise DaemonError("virtlogd did not open its socket within 15 s")
            time.sleep(0.05)

    def _libvirtd_cmd(self) -> list[str]:
        return [LIBVIRTD, "--config", str(self.workdir / "libvirtd.conf"),
                "--pid-file", str(self.pidfile)]

    def start(self, timeout: float = START_TIMEOUT) -> None:
        """Start libvirtd (virtlogd too if it is not running) and wait until it answers."""
        if self.proc is not None and self.proc.poll() is None:
            raise DaemonError("libvirtd already running")
        if self.logd is None or self.logd.poll() is not None:
            self._start_virtlogd()
        self.proc = subprocess.Popen(
            self._libvirtd_cmd(),
            stdin=subprocess.DEVNULL,
            stdout=open(self.stdio, "ab"),
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        last = "no attempt"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise DaemonError(f"libvirtd exited with {self.proc.returncode}: "
                                  + self.log_tail())
            if os.path.exists(SOCK):
                try:
                    conn = libvirt.open(URI)
                    try:
                        conn.getVersion()
                        conn.listAllDomains()
                        return
                    finally:
                        conn.close()
                except libvirt.libvirtError as e:
                    last = str(e)
            time.sleep(0.1)
        raise DaemonError(f"{URI} did not answer within {timeout:.0f} s ({last}): "
                          + self.log_tail())

    def kill(self) -> None:
        """SIGKILL libvirtd (as a crash would); running QEMU processes survive."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=15)
        # Wait for the socket to stop answering so callers see a real outage.
        deadline = time.monotonic() + 5
        while _socket_answers(SOCK) and time.monotonic() < deadline:
            time.sleep(0.05)

    def stop(self) -> None:
        for proc in (self.proc, self.logd):
            if proc is None or proc.poll() is not None:
                continue
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def connect(self):
        """A new read-write connection (the caller closes it)."""
        return libvirt.open(URI)

    @staticmethod
    def _tail(path: Path, n: int = 15) -> str:
        try:
            return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"

    def log_tail(self, n: int = 15) -> str:
        return (self._tail(self.log, n) + "\n--- stdio:\n" + self._tail(self.stdio, 5))

    # ---------------------------------------------------------------- cleanup
    def cleanup_objects(self) -> list[str]:
        """Destroy and undefine every hcit-* domain, pool (with volumes) and network.
        Returns what went wrong (never raises)."""
        problems: list[str] = []
        try:
            conn = self.connect()
        except libvirt.libvirtError as e:
            return [f"cannot connect for cleanup: {e}"]
        try:
            for dom in conn.listAllDomains():
                if dom.name().startswith(PREFIX):
                    problems += remove_domain(dom)
            for pool in conn.listAllStoragePools():
                if pool.name().startswith(PREFIX):
                    problems += remove_pool(pool)
            for net in conn.listAllNetworks():
                if net.name().startswith(PREFIX):
                    try:
                        if net.isActive():
                            net.destroy()
                        if net.isPersistent():
                            net.undefine()
                    except libvirt.libvirtError as e:
                        problems.append(f"network {net.name()}: {e}")
        finally:
            conn.close()
        return problems


def remove_domain(dom) -> list[str]:
    try:
        if dom.isActive():
            dom.destroy()
        if dom.isPersistent():
            dom.undefineFlags(
                libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE
                | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
                | libvirt.VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA
                | libvirt.VIR_DOMAIN_UNDEFINE_NVRAM
            )
    except libvirt.libvirtError as e:
        if e.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN:
            return [f"domain {dom.name()}: {e}"]
    return []


def remove_pool(pool) -> list[str]:
    try:
        if pool.isActive():
            pool.refresh()
            for vol in pool.listAllVolumes():
                vol.delete()
            pool.destroy()
        try:
            pool.delete()  # removes the (now empty) target directory
        except libvirt.libvirtError:
            pass
        if pool.isPersistent():
            pool.undefine()
    except libvirt.libvirtError as e:
        return [f"pool {pool.name()}: {e}"]
    return []


def tiny_domain_xml(name: str, disk_path: str, memory_mib: int = 96) -> str:
    """A tiny TCG domain: nothing bootable, so it sits in SeaBIOS using little CPU."""
    dom = ET.Element("domain", type="qemu")
    ET.SubElement(dom, "name").text = name
    ET.SubElement(dom, "memory", unit="MiB").text = str(memory_mib)
    ET.SubElement(dom, "vcpu").text = "1"
    os_el = ET.SubElement(dom, "os")
    ET.SubElement(os_el, "type", arch="x86_64", machine="pc").text = "hvm"
    ET.SubElement(os_el, "boot", dev="hd")
    ET.SubElement(dom, "on_crash").text = "destroy"
    dev = ET.SubElement(dom, "devices")
    ET.SubElement(dev, "emulator").text = shutil.which("qemu-system-x86_64") or "/usr/bin/qemu-system-x86_64"
    disk = ET.SubElement(dev, "disk", type="file", device="disk")
    ET.SubElement(disk, "driver", name="qemu", type="qcow2")
    ET.SubElement(disk, "source", file=disk_path)
    ET.SubElement(disk, "target", dev="vda", bus="virtio")
    ET.SubElement(ET.SubElement(dev, "serial", type="pty"), "target", port="0")
    ET.SubElement(ET.SubElement(dev, "console", type="pty"), "target", type="serial", port="0")
    ET.SubElement(ET.SubElement(dev, "video"), "model", type="none")
    ET.SubElement(dev, "memballoon", model="none")
    return ET.tostring(dom, encoding="unicode")




def unusable() -> str | None:
    """Why a test-owned daemon cannot be started here, or None."""
    if os.geteuid() != 0:
        return "needs root (qemu:///system)"
    for binary in (LIBVIRTD, VIRTLOGD, shutil.which("qemu-system-x86_64"), shutil.which("qemu-img")):
        if not binary or not os.path.exists(binary):
            return f"missing {binary or 'qemu-system-x86_64/qemu-img'}"
    running = _live_pids("libvirtd") + _live_pids("virtlogd")
    if running or _socket_answers(SOCK) or _socket_answers(VIRTLOGD_SOCK):
        # Reusing someone else's daemon would leak state both ways: refuse.
        return (f"a libvirtd/virtlogd is already running (pids {running or 'unknown'}, "
                f"{SOCK} answers={_socket_answers(SOCK)}); stop it first")
    return None


def start_daemon(workdir: Path) -> Libvirtd:
    """Prepare the host, start virtlogd + libvirtd in `workdir` and remove hcit-* leftovers of an
    aborted earlier run. Raises DaemonError (with both daemons stopped) when that fails."""
    daemon = Libvirtd(workdir)
    try:
        _ensure_qemu_user()
        os.makedirs("/var/log/libvirt/qemu", exist_ok=True)
        _fix_kvm_access()
        daemon.start()
    except (DaemonError, OSError, subprocess.SubprocessError) as e:
        daemon.stop()
        raise DaemonError(str(e)) from e
    stale = daemon.cleanup_objects()
    if stale:
        daemon.stop()
        raise DaemonError("cannot remove stale hcit-* objects: " + "; ".join(stale))
    return daemon


def stop_daemon(daemon: Libvirtd) -> list[str]:
    """Remove every hcit-* object, stop both daemons, kill any hcit- QEMU left; what went wrong."""
    problems: list[str] = []
    if not daemon.running:
        try:
            daemon.start()
        except DaemonError as e:
            problems.append(f"restart for cleanup failed: {e}")
    if daemon.running:
        problems += daemon.cleanup_objects()
    daemon.stop()
    for pid in hcit_qemu_pids():
        problems.append(f"killed leftover QEMU {pid}")
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return problems


def create_pool(daemon: Libvirtd, base: Path) -> tuple[str, Path]:
    """The dir pool hcit-pool under `base` (a directory QEMU, as libvirt-qemu, can reach)."""
    path = base / "pool"
    pool_el = ET.Element("pool", type="dir")
    ET.SubElement(pool_el, "name").text = f"{PREFIX}pool"
    ET.SubElement(ET.SubElement(pool_el, "target"), "path").text = str(path)
    conn = daemon.connect()
    try:
        pool = conn.storagePoolDefineXML(ET.tostring(pool_el, encoding="unicode"), 0)
        pool.build(0)
        pool.create(0)
        path.chmod(0o755)
    finally:
        conn.close()
    return f"{PREFIX}pool", path


def define_tiny_vm(conn, pool: tuple[str, Path], name: str, *, memory_mib: int = 96,
                   start: bool = False) -> str:
    """A tiny TCG domain with an empty 16 MiB qcow2 in `pool`; returns its XML."""
    if not name.startswith(PREFIX):
        raise ValueError(f"integration domains must be named {PREFIX}*: {name!r}")
    pool_name, pool_path = pool
    disk = pool_path / f"{name}.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(disk), "16M"],
                   check=True, capture_output=True, timeout=30)
    xml = tiny_domain_xml(name, str(disk), memory_mib)
    conn.storagePoolLookupByName(pool_name).refresh(0)
    dom = conn.defineXML(xml)
    if start:
        dom.create()
    return xml
