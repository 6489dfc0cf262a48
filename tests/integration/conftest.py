"""Integration tier (DESIGN.md "Testing tiers", 3): a real virtlogd + libvirtd + QEMU (TCG).

Fixtures (the daemon itself: tests/libvirtd_daemon.py, shared with bench/bench_real_host.py)
--------
``libvirtd`` (session)
    Starts virtlogd and libvirtd as root, as children of the test process, with their own
    config, pid and log files in a temporary directory; waits until ``qemu:///system``
    answers. Yields a :class:`Libvirtd` with ``.uri``, ``.connect()``, ``.kill()`` (SIGKILL
    libvirtd; QEMU keeps running), ``.start()`` (start it again and wait), ``.workdir``,
    ``.log_tail()``. On teardown: every domain, pool and network named ``hcit-*`` is
    destroyed and undefined (volumes deleted), then both daemons are stopped, and any
    ``hcit-`` QEMU left behind is killed.
    A libvirtd/virtlogd that is already running is never reused: setup fails with its pids.
``hcit_pool`` (session)
    The dir storage pool ``hcit-pool`` (defined, built and started through the API) on a
    directory QEMU (running as libvirt-qemu) can reach.
``tiny_vm`` (function)
    Factory ``tiny_vm(name=None, *, memory_mib=96, start=False) -> str`` defining a tiny
    TCG domain ``hcit-…`` (1 vCPU, machine pc, an empty 16 MiB qcow2 from ``hcit-pool`` as
    virtio disk, no network, no graphics, serial pty console) and returning its name.
    Its domains and volumes are removed when the test ends.

If the daemons cannot be started: with ``CI=true`` the tests FAIL (pytest.fail); without
it they are skipped with the reason.

Host preparation, and why (Debian 12 without libvirt-daemon-system, no systemd):
* the system qemu driver refuses to load unless its compiled-in user ``libvirt-qemu``
  exists, so the user (and its group) is created with ``useradd --system`` when missing —
  the same account libvirt-daemon-system would create; QEMU keeps running unprivileged
  with dynamic_ownership, as on a real host. (The alternative, ``user = "root"`` in
  qemu.conf, would mean writing /etc/libvirt/qemu.conf: the qemu driver of a root libvirtd
  reads only that file, ``--config`` is for libvirtd.conf.) No qemu.conf is written.
* if /dev/kvm exists but ``libvirt-qemu`` cannot open it (here: 0600 root:root, because
  there is no udev), libvirt's capability cache flip-flops ("KVM was enabled when probing,
  but it is not available now": the probe sees KVM, the access check as libvirt-qemu does
  not) and re-probes QEMU on *every* domain start (~50 s each). The fixture then does what
  Debian's udev rules + libvirt-daemon-system do: group ``kvm`` (created if missing),
  /dev/kvm root:kvm 0660, libvirt-qemu in ``kvm``. /dev is devtmpfs, so the mode change
  does not outlive a reboot. Test domains are ``type='qemu'`` (TCG) all the same.
  (Masking /dev/kvm in a private mount namespace was tried: libvirt's per-domain /dev
  namespace then fails to move the mask mount, so no domain starts.)
* VM images live under /var/tmp/hcit-*/ (pytest's tmp_path is under a 0700 directory
  libvirt-qemu cannot traverse).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

import pytest

libvirt = pytest.importorskip("libvirt")

from tests.libvirtd_daemon import (  # noqa: E402
    PREFIX, DaemonError, create_pool, define_tiny_vm, remove_domain, remove_pool, start_daemon, stop_daemon,
    unusable,
)


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def _unavailable(reason: str):
    if _in_ci():
        pytest.fail(f"integration tier cannot run (CI=true): {reason}", pytrace=False)
    pytest.skip(f"integration tier unavailable: {reason}")


@pytest.fixture(scope="session")
def libvirtd(tmp_path_factory):
    reason = unusable()
    if reason:
        _unavailable(reason)
    try:
        daemon = start_daemon(tmp_path_factory.mktemp("libvirtd"))
    except DaemonError as e:
        _unavailable(str(e))
    try:
        yield daemon
    finally:
        problems = stop_daemon(daemon)
        if problems:
            print("\nlibvirtd fixture teardown:", *problems, sep="\n  ")


@pytest.fixture(scope="session")
def hcit_pool(libvirtd):
    """Name and target path of the dir pool ``hcit-pool`` (session-wide)."""
    base = Path(tempfile.mkdtemp(prefix=PREFIX, dir="/var/tmp"))
    base.chmod(0o755)
    pool_name, path = create_pool(libvirtd, base)
    yield pool_name, path
    if not libvirtd.running:
        libvirtd.start()
    conn = libvirtd.connect()
    try:
        problems = remove_pool(conn.storagePoolLookupByName(pool_name))
    finally:
        conn.close()
    shutil.rmtree(base, ignore_errors=True)
    if problems:
        print("\nhcit_pool teardown:", *problems, sep="\n  ")


@pytest.fixture
def tiny_vm(libvirtd, hcit_pool, tmp_path, request):
    """Factory: ``tiny_vm(name=None, *, memory_mib=96, start=False) -> domain name``."""
    pool_name, pool_path = hcit_pool
    slug = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:24] or "vm"
    created: list[tuple[str, Path]] = []

    def make(name: str | None = None, *, memory_mib: int = 96, start: bool = False) -> str:
        name = name or f"{PREFIX}{slug}-{len(created)}"
        created.append((name, pool_path / f"{name}.qcow2"))
        conn = libvirtd.connect()
        try:
            xml = define_tiny_vm(conn, hcit_pool, name, memory_mib=memory_mib, start=start)
        finally:
            conn.close()
        (tmp_path / f"{name}.xml").write_text(xml)  # for debugging a failed test
        return name

    yield make

    if not libvirtd.running:
        libvirtd.start()
    conn = libvirtd.connect()
    try:
        for name, disk in created:
            try:
                remove_domain(conn.lookupByName(name))
            except libvirt.libvirtError:
                pass
            try:
                conn.storagePoolLookupByName(pool_name).storageVolLookupByName(disk.name).delete(0)
            except libvirt.libvirtError:
                disk.unlink(missing_ok=True)
    finally:
        conn.close()


@pytest.fixture
def manager(libvirtd):
    """Our ConnectionManager on the test daemon, closed after the test."""
    from hyperconsole.virt.connection import ConnectionManager

    mgr = ConnectionManager(libvirtd.uri)
    mgr.connect()
    yield mgr
    mgr.close()
