"""Integration (tier 3): migration between two real libvirtds on this machine, through OUR code.

The second libvirtd (``peer_libvirtd``) runs in its own mount + UTS namespace (``unshare``): its
own host name, its own ``host_uuid`` (libvirtd.conf), and tmpfs-free bind mounts of its own
directories over /run/libvirt (sockets, virtlogd), /etc/libvirt, /var/lib/libvirt,
/var/log/libvirt and /var/cache/libvirt, plus — for storage that is *not* shared — its own
directory over the test pool's path, so both daemons see the same path with different disks
behind it. We reach it from outside at ``qemu:///system?socket=<workdir>/run/libvirt-sock``.
Its qemu.conf turns cgroups off (both daemons would otherwise put a VM of the same name and id
into the same cgroup) and does not remember owners in xattrs (both share the inode for a shared
disk).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
import time
import uuid
from pathlib import Path

import pytest

libvirt = pytest.importorskip("libvirt")

from hyperconsole.errors import ValidationError  # noqa: E402
from hyperconsole.virt import migrate  # noqa: E402
from hyperconsole.virt.connection import ConnectionManager  # noqa: E402

from tests.integration.conftest import _unavailable  # noqa: E402
from tests.libvirtd_daemon import LIBVIRTD, PREFIX, VIRTLOGD, DaemonError, remove_domain, remove_pool  # noqa: E402

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

BOUND = ("/run/libvirt", "/etc/libvirt", "/var/lib/libvirt", "/var/log/libvirt", "/var/cache/libvirt")
MIGRATE_URI = "tcp://127.0.0.1"  # the peer's host name resolves nowhere


class Peer:
    def __init__(self, workdir: Path, pool_path: Path) -> None:
        self.workdir = workdir
        self.pool_path = pool_path
        self.sock = workdir / "run" / "libvirt-sock"
        self.uri = f"qemu:///system?socket={self.sock}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        w = self.workdir
        for d in ("run", "etc", "lib", "log/qemu", "cache", "pool"):
            (w / d).mkdir(parents=True, exist_ok=True)
        (w / "pool").chmod(0o755)
        (w / "libvirtd.conf").write_text(
            f'host_uuid = "{uuid.uuid4()}"\nlog_outputs = "3:file:{w}/libvirtd.log"\nkeepalive_interval = 5\n')
        (w / "etc" / "qemu.conf").write_text("cgroup_controllers = [ ]\nremember_owner = 0\n")
        (w / "virtlogd.conf").write_text(f'log_outputs = "3:file:{w}/virtlogd.log"\n')
        binds = dict(zip(BOUND, ("run", "etc", "lib", "log", "cache"), strict=True))
        script = ["set -e", "hostname hcit-peer"]
        script += [f"mount --bind {w / src} {dst}" for dst, src in binds.items()]
        script += [f"mount --bind {w / 'pool'} {self.pool_path}",
                   f"{VIRTLOGD} --daemon --config {w / 'virtlogd.conf'} --pid-file {w / 'virtlogd.pid'}",
                   f"exec {LIBVIRTD} --config {w / 'libvirtd.conf'} --pid-file {w / 'libvirtd.pid'}"]
        self.proc = subprocess.Popen(["unshare", "--mount", "--uts", "--propagation", "private", "--",
                                      "sh", "-c", "\n".join(script)],
                                     stdin=subprocess.DEVNULL, stdout=open(w / "stdio", "ab"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        last = "no attempt"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise DaemonError(f"peer libvirtd exited with {self.proc.returncode}: {self.tail()}")
            if self.sock.exists():
                try:
                    libvirt.open(self.uri).close()
                    return
                except libvirt.libvirtError as exc:
                    last = str(exc)
            time.sleep(0.1)
        raise DaemonError(f"peer libvirtd did not answer ({last}): {self.tail()}")

    def tail(self) -> str:
        text = ""
        for name in ("stdio", "libvirtd.log"):
            try:
                text += "\n".join((self.workdir / name).read_text(errors="replace").splitlines()[-8:])
            except OSError:
                pass
        return text

    def stop(self) -> list[str]:
        problems = []
        if self.proc is not None and self.proc.poll() is None:
            try:
                conn = libvirt.open(self.uri)
                for dom in conn.listAllDomains():
                    problems += remove_domain(dom)
                for pool in conn.listAllStoragePools():
                    problems += remove_pool(pool)
                conn.close()
            except libvirt.libvirtError as exc:
                problems.append(f"peer cleanup: {exc}")
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        pidfile = self.workdir / "virtlogd.pid"
        if pidfile.exists():
            try:
                os.kill(int(pidfile.read_text().strip()), signal.SIGTERM)
            except (ProcessLookupError, ValueError):
                pass
        return problems


@pytest.fixture
def peer(libvirtd, hcit_pool, tmp_path_factory):
    if not shutil.which("unshare"):
        _unavailable("missing unshare")
    pool_name, pool_path = hcit_pool
    daemon = Peer(tmp_path_factory.mktemp("peer"), pool_path)
    try:
        daemon.start()
    except (DaemonError, OSError) as exc:
        daemon.stop()
        _unavailable(f"second libvirtd: {exc}")
    # The same pool on the peer, at the same path; the bind mount puts other disks behind it.
    conn = libvirt.open(daemon.uri)
    try:
        xml = libvirtd.connect().storagePoolLookupByName(pool_name).XMLDesc(0)
        pool = conn.storagePoolDefineXML(xml, 0)
        pool.create(0)
    finally:
        conn.close()
    yield daemon
    problems = daemon.stop()
    if problems:
        print("\npeer teardown:", *problems, sep="\n  ")


@pytest.fixture
def managers(libvirtd, peer):
    source, target = ConnectionManager(libvirtd.uri), ConnectionManager(peer.uri)
    source.connect()
    target.connect()
    yield source, target
    source.close()
    target.close()


def test_live_migration_copies_the_disk_to_the_peer(managers, tiny_vm, hcit_pool, peer):
    source, target = managers
    name = tiny_vm(start=True)
    plan = migrate.preflight(source, target, name)
    assert plan.live and plan.copies_storage, plan  # the peer's pool dir is its own
    seen: list[migrate.MigrationProgress] = []
    try:
        result = migrate.migrate(source, target, plan, on_progress=seen.append, interval=0.05,
                                 migrate_uri=MIGRATE_URI)
    except Exception as exc:  # say exactly what libvirt said, then try the offline path below
        pytest.fail(f"libvirt refused live migration between the two daemons: {exc}")
    moved = target.conn.lookupByName(name)
    assert moved.isActive() and moved.isPersistent()
    with pytest.raises(libvirt.libvirtError):
        source.conn.lookupByName(name)  # undefined on the source
    assert result.copied == (str(hcit_pool[1] / f"{name}.qcow2"),)
    assert (peer.workdir / "pool" / f"{name}.qcow2").exists()  # the copy is the peer's own file
    assert seen and seen[-1].phase == "completed" and seen[-1].data_total > 0
    assert seen[-1].downtime_ms is not None


def test_aborting_a_live_migration_keeps_the_vm_on_the_source(managers, tiny_vm):
    source, target = managers
    name = tiny_vm(start=True, memory_mib=256)
    plan = migrate.preflight(source, target, name)
    cancel = threading.Event()

    def abort_when_running(progress: migrate.MigrationProgress) -> None:
        cancel.set()

    with pytest.raises(Exception, match="aborted; it keeps running on the source"):
        # a bandwidth-limited copy, so the job is still running when the abort comes
        source.conn.lookupByName(name).migrateSetMaxSpeed(1, 0)
        migrate.migrate(source, target, plan, on_progress=abort_when_running, cancel=cancel, interval=0.05,
                        migrate_uri=MIGRATE_URI)
    assert source.conn.lookupByName(name).isActive()
    assert name not in [d.name() for d in target.conn.listAllDomains()]


def test_a_file_of_the_targets_own_at_the_disks_path_is_never_written_over(managers, tiny_vm, hcit_pool, peer):
    source, target = managers
    name = tiny_vm(start=True)
    stray = peer.workdir / "pool" / f"{name}.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(stray), "16M"], check=True, timeout=30)
    target.conn.storagePoolLookupByName(hcit_pool[0]).refresh(0)
    before = stray.read_bytes()
    plan = migrate.preflight(source, target, name)  # same path, same size: it may be shared storage
    assert not plan.copies_storage
    with pytest.raises(ValidationError, match=f"the target host has its own file at {hcit_pool[1]}/{name}.qcow2"):
        migrate.migrate(source, target, plan, migrate_uri=MIGRATE_URI)  # libvirt knows it is not
    assert stray.read_bytes() == before and source.conn.lookupByName(name).isActive()


def test_offline_migration_copies_volumes_through_the_storage_api(managers, tiny_vm, hcit_pool, peer):
    source, target = managers
    name = tiny_vm()
    disk = hcit_pool[1] / f"{name}.qcow2"
    subprocess.run(["qemu-img", "resize", "-q", str(disk), "20M"], check=True, timeout=30)
    source.conn.storagePoolLookupByName(hcit_pool[0]).refresh(0)
    plan = migrate.preflight(source, target, name, offline=True)
    assert not plan.live and plan.copies_storage
    seen: list[migrate.MigrationProgress] = []
    result = migrate.migrate(source, target, plan, on_progress=seen.append)
    moved = target.conn.lookupByName(name)
    assert not moved.isActive() and moved.isPersistent()
    assert name not in [d.name() for d in source.conn.listAllDomains()]
    copy = peer.workdir / "pool" / f"{name}.qcow2"
    assert copy.read_bytes() == disk.read_bytes()  # the same image, byte for byte
    assert result.kept_on_source == (f"{hcit_pool[0]}/{name}.qcow2",)
    assert seen[-1].phase == "completed" and any(p.phase == "copying" for p in seen)
    target.conn.lookupByName(name).create()  # and it starts there
    assert target.conn.lookupByName(name).isActive()


def test_preflight_refuses_a_missing_network_on_the_real_peer(managers, libvirtd, tiny_vm):
    source, target = managers
    name = tiny_vm()
    conn = libvirtd.connect()
    try:
        net = conn.networkDefineXML(f"<network><name>{PREFIX}isolated</name><bridge name='hcitbr9'/></network>")
        net.create()
        dom = conn.lookupByName(name)
        xml = dom.XMLDesc(0).replace("</devices>", f"<interface type='network'><source network='{PREFIX}isolated'/>"
                                                   "<model type='virtio'/></interface></devices>")
        conn.defineXML(xml)
        dom.create()
    finally:
        conn.close()
    with pytest.raises(ValidationError, match=f"the target host has no network '{PREFIX}isolated'"):
        migrate.preflight(source, target, name)
    assert source.conn.lookupByName(name).isActive()


def test_cli_migrate_shows_progress_and_ctrl_c_aborts_the_job(libvirtd, peer, tiny_vm, tmp_path):
    import sys

    name = tiny_vm(start=True, memory_mib=768)
    hosts = tmp_path / "hosts.yaml"
    hosts.write_text(f"hosts:\n  here: {{uri: '{libvirtd.uri}'}}\n  peer: {{uri: '{peer.uri}'}}\n")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
           "XDG_STATE_HOME": str(tmp_path / "state"), "XDG_CONFIG_HOME": str(tmp_path / "config")}
    argv = [sys.executable, "-m", "hyperconsole", "--hosts", str(hosts), "vm", "migrate", name, "--to", "peer",
            "--migrate-uri", MIGRATE_URI]
    conn = libvirtd.connect()
    try:
        conn.lookupByName(name).migrateSetMaxSpeed(1, 0)  # 1 MiB/s: still running when ctrl-c comes
    finally:
        conn.close()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if "running:" in line:
            proc.send_signal(signal.SIGINT)
            break
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 1, (lines, out, err)
    assert lines[0].startswith(f"migrating {name} live from here to peer, copying disks vda")
    assert "remaining at" in lines[-1]
    assert f"error: migration of {name} aborted; it keeps running on the source" in err
    assert not (peer.workdir / "pool" / f"{name}.qcow2").exists()  # the half-made copy is gone
    conn = libvirtd.connect()
    try:
        dom = conn.lookupByName(name)
        assert dom.isActive()
        dom.migrateSetMaxSpeed(10000, 0)
    finally:
        conn.close()
    # and without the brake it goes through
    done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=180)
    assert done.returncode == 0, done.stderr
    assert f"{name} now runs on peer" in done.stdout and "completed" in done.stdout


def test_cpu_the_target_cannot_run_is_refused(managers):
    import xml.etree.ElementTree as ET

    source, target = managers
    root = ET.fromstring(
        "<domain type='qemu'><os><type arch='x86_64' machine='pc'>hvm</type></os>"
        "<cpu mode='custom' match='exact'><model fallback='forbid'>qemu64</model>"
        "<feature policy='require' name='avx512f'/><feature policy='require' name='amx-tile'/></cpu></domain>")
    with pytest.raises(ValidationError, match=r"the target host's CPU cannot run this VM's CPU \(qemu64\)"):
        migrate._cpu_check(source.conn, target.conn, root)
    root.find("cpu").remove(root.find("cpu/feature"))
    root.find("cpu").remove(root.find("cpu/feature"))
    assert migrate._cpu_check(source.conn, target.conn, root) == []


def test_a_stopped_daemon_delays_no_other_host(libvirtd, peer, tiny_vm):
    """The peer's libvirtd is stopped (SIGSTOP): the fleet opens and summarises the other host
    within the deadline and calls the peer unreachable; once the daemon runs again, its open
    (left going on its own thread) connects it."""
    from hyperconsole.hosts import HostSpec
    from hyperconsole.virt.fleet import Fleet, HostState, summarize_all

    tiny_vm(start=True)
    daemon = peer.proc.pid
    fleet = Fleet([HostSpec("peer", peer.uri, "/x"), HostSpec("here", libvirtd.uri, "/etc/nixos")])
    os.kill(daemon, signal.SIGSTOP)
    try:
        started = time.monotonic()
        statuses = {s.name: s for s in fleet.open_all(deadline=3, retry=False)}
        summaries = {s.name: s for s in summarize_all(fleet, deadline=3, cpu_interval=0)}
        elapsed = time.monotonic() - started
        assert statuses["here"].state is HostState.CONNECTED
        assert statuses["peer"].state is HostState.UNREACHABLE and statuses["peer"].reason == "no answer within 3s"
        assert summaries["here"].vms.get("running", 0) >= 1 and summaries["peer"].state == "unreachable"
        assert elapsed < 8
    finally:
        os.kill(daemon, signal.SIGCONT)
    try:
        deadline = time.monotonic() + 30
        while fleet.host("peer").status().state is not HostState.CONNECTED and time.monotonic() < deadline:
            time.sleep(0.1)
        assert fleet.host("peer").status().state is HostState.CONNECTED
    finally:
        fleet.close()


async def test_a_running_vm_migrates_by_keyboard_in_the_console(libvirtd, peer, tiny_vm):
    """The console over both daemons: the VM's row on `here`, `m`, the target and the migration
    address in the form, `y` to the question. Braked to 1 MiB/s, the status bar follows the job
    and ctrl+x aborts it (the VM keeps running here); unbraked, it then runs on the peer, its row
    is there and the task log has both attempts."""
    from hyperconsole.app import HyperconsoleApp
    from hyperconsole.config import Config
    from hyperconsole.hosts import HostSpec
    from hyperconsole.virt.fleet import Fleet
    from hyperconsole.widgets.confirm import ConfirmDialog
    from tests.ui.conftest import fill_form, text_of, wait_until

    name = tiny_vm(start=True, memory_mib=768)
    fleet = Fleet([HostSpec("here", libvirtd.uri, "/etc/nixos"), HostSpec("peer", peer.uri, "/x")])
    fleet.open_all(deadline=30, retry=False)
    here = fleet.manager("here").conn
    here.lookupByName(name).migrateSetMaxSpeed(1, 0)  # 1 MiB/s: still running when ctrl+x comes
    app = HyperconsoleApp(fleet.manager("here"), Config(refresh=1.0), fleet=fleet)
    try:
        async with app.run_test(size=(160, 45)) as pilot:
            row = lambda host: next((d for d in app.view.domains.values()  # noqa: E731
                                     if d.name == name and d.host == host), None)

            async def migrate_by_keyboard() -> None:
                await wait_until(pilot, lambda: row("here") is not None, 30)
                app.screen.view.move_to(row("here").key)
                await pilot.press("m")
                await fill_form(pilot, {"to": "peer", "via": MIGRATE_URI})
                await wait_until(pilot, lambda: isinstance(app.screen, ConfirmDialog), 60)
                assert f"Migrate VM {name} live from here to peer?" in text_of(app.screen.query_one(".question"))
                await pilot.press("y")

            await migrate_by_keyboard()
            deadline = time.monotonic() + 60  # not wait_until: it waits for the migration's own worker
            while " left at " not in app.view.migration and time.monotonic() < deadline:
                await pilot.pause(0.1)
            assert app.view.migration.startswith(f"migrate {name} here → peer: running")
            assert app.view.migration.endswith("ctrl+x aborts")
            await pilot.press("ctrl+x")
            await wait_until(pilot, lambda: any(t.ended for t in app.tasks.tasks), 120)
            (aborted,) = app.tasks.tasks
            assert f"migration of {name} aborted; it keeps running on the source" in aborted.error
            assert here.lookupByName(name).isActive() and app.migration is None and not app.view.migration

            here.lookupByName(name).migrateSetMaxSpeed(10000, 0)
            await migrate_by_keyboard()
            await wait_until(pilot, lambda: len([t for t in app.tasks.tasks if t.ended]) == 2, 180)
            done = next(t for t in app.tasks.tasks if t is not aborted)
            assert done.label == f"migrate {name} here → peer" and not done.error, done.error
            moved = fleet.manager("peer").conn.lookupByName(name)
            assert moved.isActive() and moved.isPersistent()
            await wait_until(pilot, lambda: row("peer") is not None and row("here") is None, 30)
    finally:
        fleet.close()
