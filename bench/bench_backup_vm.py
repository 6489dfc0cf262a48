"""Benchmark: the VM side of a backup — reading a running VM's disk through libvirt's pull-mode
backup over NBD, and writing it back into a new volume — beside `qemu-img convert` of the same
disk (the copy floor on this machine).

Prints figures; asserts nothing. Needs root and no libvirtd running (it starts its own, as the
integration tests do); run it under `flock /tmp/hc-integration.lock`.
Usage: python bench/bench_backup_vm.py [--disk-gib 2] [--data-mib 256]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hyperconsole.backup.restore import VmRestorer  # noqa: E402
from hyperconsole.backup.source import open_vm  # noqa: E402
from tests.libvirtd_daemon import remove_domain as _remove_domain, remove_pool as _remove_pool  # noqa: E402
from tests.libvirtd_daemon import start_daemon, stop_daemon, tiny_domain_xml  # noqa: E402

MiB = 1024**2
CHUNK = 32 * MiB


def _timed(fn):
    t = time.monotonic()
    out = fn()
    return time.monotonic() - t, out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--disk-gib", type=int, default=2)
    ap.add_argument("--data-mib", type=int, default=256)
    args = ap.parse_args()
    base = Path(tempfile.mkdtemp(prefix="hcit-bench-", dir="/var/tmp"))
    base.chmod(0o755)
    (base / "pool").mkdir(mode=0o755)
    daemon = start_daemon(Path(tempfile.mkdtemp(prefix="hcit-bench-libvirtd-")))
    conn = daemon.connect()
    name = "hcit-bench-vm"
    try:
        pool_el = ET.Element("pool", type="dir")
        ET.SubElement(pool_el, "name").text = "hcit-bench"
        ET.SubElement(ET.SubElement(pool_el, "target"), "path").text = str(base / "pool")
        pool = conn.storagePoolCreateXML(ET.tostring(pool_el, encoding="unicode"), 0)
        disk = base / "pool" / f"{name}.qcow2"
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(disk), f"{args.disk_gib}G"], check=True)
        # the data in 8 MiB runs spread over the disk, each with its own byte
        runs = args.data_mib // 8
        step = args.disk_gib * 1024 // runs
        cmds = [a for i in range(runs) for a in ("-c", f"write -P {i % 251 + 1} {i * step}M 8M")]
        subprocess.run(["qemu-io", "-f", "qcow2", *cmds, str(disk)], check=True, capture_output=True)
        pool.refresh(0)
        conn.defineXML(tiny_domain_xml(name, str(disk))).create()

        floor_t, _ = _timed(lambda: subprocess.run(
            ["qemu-img", "convert", "-U", "-O", "raw", str(disk), str(base / "floor.raw")], check=True))
        (base / "floor.raw").unlink()

        def backup():
            captured = []
            with open_vm(conn, name, quiesce=False, scratch_dir=base / "scratch") as vm:
                [d] = vm.disks
                for e in d.extents():
                    if e.data:
                        for off in range(e.offset, e.offset + e.length, CHUNK):
                            n = min(CHUNK, e.offset + e.length - off)
                            captured.append((off, d.read(off, n)))
                return vm.xml, d.virtual_size, d.bytes_read, captured

        read_t, (xml, size, nread, captured) = _timed(backup)

        def restore():
            with VmRestorer(conn, xml, None, as_name=f"{name}-r", pool=None, in_place=False, strip_nics=True) as r:
                w = r.disk("vda", size)
                for off, data in captured:
                    w.write(off, data)
                w.close()
                return r.finish()

        restore_t, _ = _timed(restore)
        new_path = ET.fromstring(conn.lookupByName(f"{name}-r").XMLDesc(0)).find("devices/disk/source").get("file")
        same = subprocess.run(["qemu-img", "compare", "-U", str(disk), new_path], capture_output=True).returncode == 0
        data = args.data_mib
        print(f"VM side of a backup: running TCG VM, {args.disk_gib} GiB qcow2 holding {data} MiB")
        print(f"{'':34}{'seconds':>9}{'MiB/s':>9}{'x floor':>9}")
        print(f"{'qemu-img convert (copy floor)':34}{floor_t:9.2f}{data / floor_t:9.0f}{1:9.2f}")
        print(f"{'open_vm read (pull backup, NBD)':34}{read_t:9.2f}{data / read_t:9.0f}{read_t / floor_t:9.2f}")
        print(f"{'VmRestorer write (qemu-nbd)':34}{restore_t:9.2f}{data / restore_t:9.0f}{restore_t / floor_t:9.2f}")
        print(f"bytes read {nread / MiB:.0f} MiB of {size / MiB:.0f} MiB virtual; restored copy identical: {same}")
    finally:
        for dom in conn.listAllDomains():
            if dom.name().startswith(name):
                _remove_domain(dom)
        for p in conn.listAllStoragePools():
            if p.name() == "hcit-bench":
                _remove_pool(p)
        conn.close()
        stop_daemon(daemon)
        subprocess.run(["rm", "-rf", str(base)])


if __name__ == "__main__":
    main()
