"""The doctor against a real libvirtd: it opens its own connection (read-write, with QEMU's
version), and a dir pool on a small tmpfs is made nearly full, then full, with a real file."""

from __future__ import annotations

import os
import subprocess
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from hyperconsole import doctor
from hyperconsole.config import Config
from hyperconsole.doctor.model import Status
from tests.integration.conftest import PREFIX


def _run(ctx, check_id):
    (result,) = doctor.run_checks(doctor.select(doctor.CHECKS, [check_id]), ctx)
    return result


def test_connection_and_versions_on_the_real_daemon(libvirtd):
    ctx = doctor.Context(Config(connections={"default": libvirtd.uri}))
    try:
        result = _run(ctx, "libvirt.connection")
        assert result.status is Status.PASS, result
        assert result.why.startswith("libvirt ") and ", QEMU " in result.why and result.why.endswith("read-write")
    finally:
        ctx.close()


@pytest.fixture
def small_pool(libvirtd):
    base = Path(tempfile.mkdtemp(prefix=PREFIX, dir="/var/tmp"))
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m,mode=0755", "tmpfs", str(base)], check=True)
    name = f"{PREFIX}doctor-full"
    pool_el = ET.Element("pool", type="dir")
    ET.SubElement(pool_el, "name").text = name
    ET.SubElement(ET.SubElement(pool_el, "target"), "path").text = str(base)
    conn = libvirtd.connect()
    pool = conn.storagePoolDefineXML(ET.tostring(pool_el, encoding="unicode"), 0)
    pool.create(0)
    try:
        yield name, base, pool
    finally:
        try:
            pool.destroy()
        finally:
            pool.undefine()
            conn.close()
            subprocess.run(["umount", str(base)], check=False)
            os.rmdir(base)


def test_pool_space_of_a_nearly_full_pool(libvirtd, small_pool):
    name, base, pool = small_pool
    ctx = doctor.Context(Config(connections={"default": libvirtd.uri}))
    try:
        total = os.statvfs(base).f_blocks * os.statvfs(base).f_frsize
        for free, status in ((50, Status.PASS), (10, Status.WARN), (2, Status.FAIL)):
            (base / "fill").write_bytes(b"\0" * int(total * (100 - free) / 100))
            pool.refresh(0)
            result = _run(ctx, "libvirt.pool-space")
            line = next(line for line in result.detail.splitlines() if line.startswith(f"{name}:"))
            assert line.endswith(f"({free} %)"), line
            assert result.status is status, result  # the test daemon has no other pool
            assert (f"{name}:" in result.why) is (status is not Status.PASS)
    finally:
        ctx.close()
