"""Benchmark: a whole backup job — a running TCG VM's disk read through libvirt's pull-mode backup,
streamed as a sparse tar into restic, an unchanged second run, and a restore into a new VM — beside
`qemu-img convert` of the same disk (the copy floor on this machine; from the page cache, as our
runs read it, and with the page cache dropped), restic alone on the very same data bytes from stdin
(`--compression auto` and `off`: restic's own floor, which no pipeline in front of it can beat)
and `restic dump` alone into /dev/null (its restore floor), and, when installed from Debian,
`virtnbdbackup` full and incremental of the same VM.

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

import msgspec  # noqa: E402

from hyperconsole.backup import jobs, runner  # noqa: E402
from hyperconsole.backup.restic import Repository  # noqa: E402
from tests.libvirtd_daemon import remove_domain as _remove_domain, remove_pool as _remove_pool  # noqa: E402
from tests.libvirtd_daemon import start_daemon, stop_daemon, tiny_domain_xml  # noqa: E402

MiB = 1024**2


def _timed(fn):
    t = time.monotonic()
    out = fn()
    return time.monotonic() - t, out


def _drop_caches() -> bool:
    """Write dirty pages and drop the page cache (root), so the next read comes from the disk."""
    try:
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return True
    except OSError:
        return False


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--disk-gib", type=int, default=2)
    ap.add_argument("--data-mib", type=int, default=256)
    args = ap.parse_args()
    base = Path(tempfile.mkdtemp(prefix="hcit-bench-", dir="/var/tmp"))
    base.chmod(0o755)
    (base / "pool").mkdir(mode=0o755)
    os.environ["XDG_STATE_HOME"] = str(base / "state")
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
        # Incompressible data (as a real disk mostly is) in 8 MiB runs spread over the disk.
        runs = args.data_mib // 8
        step = args.disk_gib * 1024 // runs
        data_file = base / "data.bin"  # the same bytes, for restic alone
        cmds = []
        with data_file.open("wb") as everything:
            for i in range(runs):
                part = base / f"run{i}.bin"
                block = os.urandom(8 * MiB)
                part.write_bytes(block)
                everything.write(block)
                cmds += ["-c", f"write -s {part} {i * step}M 8M"]
        subprocess.run(["qemu-io", "-f", "qcow2", *cmds, str(disk)], check=True, capture_output=True)
        for i in range(runs):
            (base / f"run{i}.bin").unlink()
        pool.refresh(0)
        conn.defineXML(tiny_domain_xml(name, str(disk))).create()

        def floor() -> float:
            t, _ = _timed(lambda: subprocess.run(
                ["qemu-img", "convert", "-U", "-O", "raw", str(disk), str(base / "floor.raw")], check=True))
            (base / "floor.raw").unlink()
            return t

        cold_t = floor() if _drop_caches() else None
        floor_t = floor()  # from the page cache: the disk our runs read is cached the same way

        pw_alone = base / "alone.pw"
        pw_alone.write_text("bench\n")
        pw_alone.chmod(0o600)
        alone = {}
        for comp in ("auto", "off"):
            repo = Repository(str(base / f"alone-{comp}"), str(pw_alone), compression=comp,
                              cache_dir=str(base / "cache"))
            repo.init()
            with data_file.open("rb") as src:
                alone[comp], _ = _timed(lambda: subprocess.run(
                    repo.argv("backup", "--stdin", "--stdin-filename", "data.bin", "--json"), stdin=src,
                    env=repo.env(), check=True, capture_output=True, timeout=3600))

        pw = base / "restic.pw"
        pw.write_text("bench\n")
        pw.chmod(0o600)
        job = jobs.Job(name="bench", repository=str(base / "repo"), password_file=str(pw), vms=(name,),
                       retention=jobs.Retention(last=10), quiesce=False)
        runner.repository(job).init()
        scratch = base / "scratch"
        records = runner.Records(base / "records")
        first_t, first = _timed(lambda: runner.run_job(conn, job, scratch=scratch, records=records))
        second_t, second = _timed(lambda: runner.run_job(conn, job, scratch=scratch, records=records))
        off_job = msgspec.structs.replace(job, name="bench-off", repository=str(base / "repo-off"), compression="off")
        runner.repository(off_job).init()
        off_t, off = _timed(lambda: runner.run_job(conn, off_job, scratch=scratch, records=records))
        assert first.ok and second.ok and off.ok, (first.summary(), second.summary(), off.summary())
        snap = runner.repository(job).snapshots()[-1]
        repo = runner.repository(job)
        dump_t, _ = _timed(lambda: subprocess.run(
            repo.argv("dump", snap.id, snap.paths[0]), stdout=subprocess.DEVNULL, env=repo.env(), check=True,
            timeout=3600))
        restore_t, _ = _timed(lambda: runner.restore_snapshot(conn, job, snap, as_name=f"{name}-r"))
        new_path = ET.fromstring(conn.lookupByName(f"{name}-r").XMLDesc(0)).find("devices/disk/source").get("file")
        same = subprocess.run(["qemu-img", "compare", "-U", str(disk), new_path], capture_output=True).returncode == 0
        stats = runner.stats(job)

        data = args.data_mib
        print(f"Backup job: running TCG VM, {args.disk_gib} GiB qcow2 holding {data} MiB (random data)")
        print(f"{'':40}{'seconds':>9}{'MiB/s':>9}{'x floor':>9}{'x restic':>9}")

        def row(label: str, t: float, restic_t: float | None = None) -> None:
            vs = f"{t / restic_t:9.2f}" if restic_t else f"{'':9}"
            print(f"{label:40}{t:9.2f}{data / t:9.0f}{t / floor_t:9.2f}{vs}")

        row("qemu-img convert (copy floor, cached)", floor_t)
        if cold_t is not None:
            row("qemu-img convert, page cache dropped", cold_t)
        row("restic alone, stdin, compression auto", alone["auto"])
        row("restic alone, stdin, compression off", alone["off"])
        row("first backup (pull → tar → restic) auto", first_t, alone["auto"])
        row("  of which the VM's snapshot (auto)", first.vms[0].seconds, alone["auto"])
        row("first backup, compression off", off_t, alone["off"])
        row("  of which the VM's snapshot (off)", off.vms[0].seconds, alone["off"])
        row("second backup, VM unchanged", second_t)
        row("restic dump alone → /dev/null", dump_t)
        row("restore as a new VM (dump → volume)", restore_t, dump_t)
        print("x floor: against the cached copy floor (our runs read the same cached disk through NBD)"
              + ("" if cold_t is not None else "; the page cache could not be dropped here"))
        print("x restic: against restic alone on the same bytes (backup) or `restic dump` alone (restore); "
              "a whole run also lists the job's snapshots first (one line for a wrong password before any VM "
              "work) and applies the retention after")
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
        stop_daemon(daemon)
        subprocess.run(["rm", "-rf", str(base)])


if __name__ == "__main__":
    main()
