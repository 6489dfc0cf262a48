"""Benchmark: a whole backup job — a running TCG VM's disk read through libvirt's pull-mode backup,
streamed as a sparse tar into restic, an unchanged second run, and a restore into a new VM — beside
`qemu-img convert` of the same disk (the copy floor on this machine) and, when installed from
Debian, `virtnbdbackup` full and incremental of the same VM.

Prints figures; asserts nothing. Needs root, restic, and no libvirtd running (it starts its own, as
the integration tests do); run it under `flock /tmp/hc-integration.lock`.
Usage: python bench/bench_backup.py [--disk-gib 2] [--data-mib 256]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hyperconsole.backup import jobs, runner  # noqa: E402
from tests.integration.conftest import Libvirtd, _remove_domain, _remove_pool, tiny_domain_xml  # noqa: E402

MiB = 1024**2


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
    os.environ["XDG_STATE_HOME"] = str(base / "state")
    daemon = Libvirtd(Path(tempfile.mkdtemp(prefix="hcit-bench-libvirtd-")))
    daemon.start()
    conn = daemon.connect()
    name = "hcit-bench-vm"
    try:
        pool_el = ET.Element("pool", type="dir")
        ET.SubElement(pool_el, "name").text = "hcit-bench"
        ET.SubElement(ET.SubElement(pool_el, "target"), "path").text = str(base / "pool")
        pool = conn.storagePoolCreateXML(ET.tostring(pool_el, encoding="unicode"), 0)
        disk = base / "pool" / f"{name}.qcow2"
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(disk), f"{args.disk_gib}G"], check=True)
        # Incompressible data (as a real disk mostly is) in 8 MiB runs spread over the disk.
        runs = args.data_mib // 8
        step = args.disk_gib * 1024 // runs
        chunk = base / "chunk.bin"
        cmds = []
        for i in range(runs):
            part = base / f"run{i}.bin"
            part.write_bytes(os.urandom(8 * MiB))
            cmds += ["-c", f"write -s {part} {i * step}M 8M"]
        subprocess.run(["qemu-io", "-f", "qcow2", *cmds, str(disk)], check=True, capture_output=True)
        for i in range(runs):
            (base / f"run{i}.bin").unlink()
        chunk.unlink(missing_ok=True)
        pool.refresh(0)
        conn.defineXML(tiny_domain_xml(name, str(disk))).create()

        floor_t, _ = _timed(lambda: subprocess.run(
            ["qemu-img", "convert", "-U", "-O", "raw", str(disk), str(base / "floor.raw")], check=True))
        (base / "floor.raw").unlink()

        pw = base / "restic.pw"
        pw.write_text("bench\n")
        pw.chmod(0o600)
        job = jobs.Job(name="bench", repository=str(base / "repo"), password_file=str(pw), vms=(name,),
                       retention=jobs.Retention(last=10), quiesce=False)
        runner.repository(job).init()
        scratch = base / "scratch"
        first_t, first = _timed(lambda: runner.run_job(conn, job, scratch=scratch))
        second_t, second = _timed(lambda: runner.run_job(conn, job, scratch=scratch))
        assert first.ok and second.ok, (first.summary(), second.summary())
        snap = runner.repository(job).snapshots()[-1]
        restore_t, _ = _timed(lambda: runner.restore_snapshot(conn, job, snap, as_name=f"{name}-r"))
        new_path = ET.fromstring(conn.lookupByName(f"{name}-r").XMLDesc(0)).find("devices/disk/source").get("file")
        same = subprocess.run(["qemu-img", "compare", "-U", str(disk), new_path], capture_output=True).returncode == 0
        stats = runner.stats(job)

        data = args.data_mib
        print(f"Backup job: running TCG VM, {args.disk_gib} GiB qcow2 holding {data} MiB (random data)")
        print(f"{'':38}{'seconds':>9}{'MiB/s':>9}{'x floor':>9}")
        print(f"{'qemu-img convert (copy floor)':38}{floor_t:9.2f}{data / floor_t:9.0f}{1:9.2f}")
        print(f"{'first backup (pull → tar → restic)':38}{first_t:9.2f}{data / first_t:9.0f}{first_t / floor_t:9.2f}")
        print(f"{'second backup, VM unchanged':38}{second_t:9.2f}{data / second_t:9.0f}{second_t / floor_t:9.2f}")
        print(f"{'restore as a new VM (restic dump)':38}{restore_t:9.2f}{data / restore_t:9.0f}{restore_t / floor_t:9.2f}")
        added = second.vms[0].added
        print(f"second backup added {added / 1024:.1f} KiB ({100 * added / (data * MiB):.3f} % of the data); "
              f"repository stores {stats.raw_size / MiB:.0f} MiB for {stats.restore_size / MiB:.0f} MiB restored "
              f"(dedup ratio {stats.ratio:.1f}); restored copy identical: {same}")
        tool = shutil.which("virtnbdbackup")
        if tool is None:
            print("virtnbdbackup: not installed (Debian package virtnbdbackup), not compared")
        else:
            out = base / "vnbd"
            full_t, _ = _timed(lambda: subprocess.run([tool, "-U", daemon.uri, "-d", name, "-l", "full", "-o", str(out)],
                                                      capture_output=True, timeout=3600))
            inc_t, _ = _timed(lambda: subprocess.run([tool, "-U", daemon.uri, "-d", name, "-l", "inc", "-o", str(out)],
                                                     capture_output=True, timeout=3600))
            print(f"{'virtnbdbackup full':38}{full_t:9.2f}{data / full_t:9.0f}{full_t / floor_t:9.2f}")
            print(f"{'virtnbdbackup incremental':38}{inc_t:9.2f}{'':9}{inc_t / floor_t:9.2f}")
    finally:
        for dom in conn.listAllDomains():
            if dom.name().startswith(name):
                _remove_domain(dom)
        for p in conn.listAllStoragePools():
            if p.name() == "hcit-bench":
                _remove_pool(p)
        conn.close()
        daemon.stop()
        subprocess.run(["rm", "-rf", str(base)])


if __name__ == "__main__":
    main()
