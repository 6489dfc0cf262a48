"""Benchmark: the console on a real libvirtd with running QEMU (TCG) VMs, beside virt-manager.

Prints a table; asserts nothing. Needs root (it starts the integration tier's own virtlogd +
libvirtd, tests/libvirtd_daemon.py) and holds /tmp/hc-integration.lock while the daemon runs.
Usage: python bench/bench_real_host.py [--vms 40] [--seconds 60] [--no-virt-manager]

- 40 tiny TCG VMs defined and started, then three windows of --seconds each, one after the other:
  libvirtd with no client (its idle CPU), the console on the VM list (2 s refresh, 160×50 pty),
  virt-manager with its manager window open under Xvfb on the same socket
- CPU: % of one core, user + system, of the client process and of libvirtd; "libvirtd caused" is
  libvirtd's CPU with the client minus its CPU with no client. Each window is cut into slices:
  the median over the slices is shown with the spread (min–max) beside it
- RSS: the client's resident memory at the end of its window (peak for the console: VmHWM)
- start: process start to the first VM row painted (the console's own output on the pty)
- calls/tick: libvirt calls in a steady-state tick of the console's poll, counted at the binding
  (tests/libvirt_calls.py) with the app running headless at 160×50 on the VM list
virt-manager and Xvfb are Debian packages; the benchmark installs them with apt-get when missing.
"""

from __future__ import annotations

import argparse
import asyncio
import fcntl
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_refresh import drain, measure_ticks, spawn, stop  # noqa: E402
from tests.libvirtd_daemon import (  # noqa: E402
    PREFIX, SOCK, URI, DaemonError, create_pool, define_tiny_vm, start_daemon, stop_daemon, unusable,
)

LOCK = "/tmp/hc-integration.lock"
TARGETS = {"cpu": 0.8, "libvirtd": 0.6}
SLICE = 10.0  # seconds per slice of a window


class Window:
    """CPU % of one core of some processes, sampled slice by slice."""

    def __init__(self, procs: dict[str, psutil.Process]) -> None:
        self.procs = procs
        self.slices: dict[str, list[float]] = {k: [] for k in procs}

    @staticmethod
    def _cpu(proc: psutil.Process) -> float:
        t = proc.cpu_times()
        return t.user + t.system

    def run(self, seconds: float, wait=time.sleep) -> "Window":
        left = seconds
        while left > 0:
            step = min(SLICE, left)
            before = {k: self._cpu(p) for k, p in self.procs.items()}
            t0 = time.perf_counter()
            wait(step)
            elapsed = time.perf_counter() - t0
            for k, p in self.procs.items():
                self.slices[k].append((self._cpu(p) - before[k]) / elapsed * 100)
            left -= step
        return self

    def median(self, key: str) -> float:
        return statistics.median(self.slices[key])

    def spread(self, key: str) -> str:
        return f"{min(self.slices[key]):.2f}–{max(self.slices[key]):.2f}"


def start_vms(daemon, base: Path, count: int) -> None:
    pool = create_pool(daemon, base)
    conn = daemon.connect()
    try:
        for i in range(count):
            define_tiny_vm(conn, pool, f"{PREFIX}bench-{i:02d}", start=True)
    finally:
        conn.close()


def measure_console(libvirtd: psutil.Process, seconds: float, profile: str | None = None) -> dict:
    t0 = time.perf_counter()
    proc, master = spawn(URI)
    try:
        painted, _ = drain(master, f"{PREFIX}bench-00".encode(), 60)
        start = time.perf_counter() - t0 if painted else float("nan")
        drain(master, None, 5)  # start-up settles (static facts, first rates)
        console = psutil.Process(proc.pid)
        profiler = None
        if profile:  # py-spy samples the console over its window (it costs the console nothing)
            profiler = subprocess.Popen([shutil.which("py-spy") or "py-spy", "record", "-p", str(proc.pid), "-d",
                                         str(int(seconds)), "-r", "50", "--gil", "-f", "speedscope" if profile.endswith(
                                             ".json") else "flamegraph", "-o", profile, "--threads"],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # The pty is read all along, or a full buffer would stall the app and flatter its figure.
        window = Window({"client": console, "libvirtd": libvirtd}).run(
            seconds, wait=lambda s: drain(master, None, s))
        rss = _status_mib(proc.pid, "VmHWM")
        if profiler is not None:
            profiler.wait(30)
    finally:
        stop(proc, master)
    return {"start": start, "window": window, "rss": rss}


def ensure_virt_manager() -> str | None:
    """Install virt-manager and Xvfb when missing; why they cannot be used, or None."""
    if not (shutil.which("virt-manager") and shutil.which("xvfb-run")):
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        try:
            subprocess.run(["apt-get", "install", "-y", "-q", "virt-manager", "xvfb"], env=env, check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=900)
        except (subprocess.SubprocessError, OSError) as exc:
            return f"apt-get install virt-manager xvfb failed: {exc}"
    return None


def measure_virt_manager(libvirtd: psutil.Process, seconds: float) -> dict:
    reason = ensure_virt_manager()
    if reason:
        return {"skipped": reason}
    cmd = ["xvfb-run", "-a", "-s", "-screen 0 1280x1024x24"]
    if shutil.which("dbus-run-session"):
        cmd += ["dbus-run-session", "--"]
    cmd += ["virt-manager", "--no-fork", "--connect", f"qemu:///system?socket={SOCK}"]
    log = tempfile.NamedTemporaryFile(prefix="hc-bench-virt-manager-", suffix=".log", delete=False)
    runner = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                              start_new_session=True)
    try:
        client = _find_virt_manager(runner, timeout=60)
        if client is None:
            return {"skipped": f"virt-manager did not start (log: {log.name})"}
        time.sleep(15)  # connects, lists the VMs and starts its own polling (1 s by default, no stats)
        window = Window({"client": client, "libvirtd": libvirtd}).run(seconds)
        rss = _status_mib(client.pid, "VmRSS")
    finally:
        try:
            os.killpg(runner.pid, signal.SIGTERM)
            runner.wait(15)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(runner.pid, signal.SIGKILL)
            runner.wait()
    return {"start": float("nan"), "window": window, "rss": rss}


def _find_virt_manager(runner: subprocess.Popen, timeout: float) -> psutil.Process | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and runner.poll() is None:
        for child in psutil.Process(runner.pid).children(recursive=True):
            try:
                if any("virt-manager" in part for part in child.cmdline()[1:2]):
                    return child
            except psutil.Error:
                continue
        time.sleep(0.2)
    return None


def _status_mib(pid: int, field: str) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def report(vms: int, seconds: float, idle: Window, ours: dict, theirs: dict, ticks: dict) -> None:
    idle_d = idle.median("libvirtd")

    def figures(result: dict) -> dict:
        w = result["window"]
        return {
            "cpu": (w.median("client"), w.spread("client")),
            "libvirtd": (w.median("libvirtd") - idle_d, w.spread("libvirtd")),
            "rss": result["rss"], "start": result["start"],
        }

    mine = figures(ours)
    other = figures(theirs) if "window" in theirs else None
    mark = lambda v, t: "" if t is None else (" ok" if v <= t else " OVER")  # noqa: E731
    print(f"{vms} running TCG VMs on a real libvirtd, {seconds:.0f} s per window in {SLICE:.0f} s slices, "
          f"refresh 2 s; libvirtd idle (no client): {idle_d:.2f} % (slices {idle.spread('libvirtd')})")
    print(f"{'figure':<30} | {'hyperconsole':>26} | {'virt-manager':>26} | {'ours/theirs':>11}")
    print("-" * 103)
    rows = (("client CPU % of one core", "cpu", TARGETS["cpu"]),
            ("libvirtd CPU % caused", "libvirtd", TARGETS["libvirtd"]))
    for label, key, target in rows:
        ours_v, ours_s = mine[key]
        cell = f"{ours_v:.2f}{mark(ours_v, target)} ({ours_s})"
        if other:
            their_v, their_s = other[key]
            ratio = f"{ours_v / their_v:.2f}" if their_v > 0.005 else "n/a"
            print(f"{label:<30} | {cell:>26} | {f'{their_v:.2f} ({their_s})':>26} | {ratio:>11}")
        else:
            print(f"{label:<30} | {cell:>26} | {'–':>26} | {'–':>11}")
    rss_other, rss_ratio = (f"{other['rss']:.0f}", f"{mine['rss'] / other['rss']:.2f}") if other else ("–", "–")
    print(f"{'RSS (MiB)':<30} | {mine['rss']:>26.0f} | {rss_other:>26} | {rss_ratio:>11}")
    print(f"{'start to first row (s)':<30} | {mine['start']:>26.2f} | {'n/a':>26} | {'–':>11}")
    print(f"{'libvirt calls per tick':<30} | {ticks['calls']:>26} | {'–':>26} | {'–':>11}")
    print(f"{'tick median / p95 (ms)':<30} | {ticks['tick_median']:>12.1f} / {ticks['tick_p95']:<11.1f} | "
          f"{'–':>26} | {'–':>11}")
    if "skipped" in theirs:
        print(f"virt-manager: {theirs['skipped']}")
    print(f"machine: {os.cpu_count()} cores, load {' '.join(f'{x:.2f}' for x in os.getloadavg())} "
          "(shared machines give noisy figures: compare medians, read the spread)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vms", type=int, default=40)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--no-virt-manager", action="store_true")
    parser.add_argument("--profile", metavar="FILE", help="py-spy profile of the console's window (.svg or "
                        ".json); py-spy must be on PATH (pip install py-spy, outside the project)")
    args = parser.parse_args()
    with open(LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # the same lock as `flock /tmp/hc-integration.lock`
        reason = unusable()  # checked once the lock is ours: the integration tests hold it too
        if reason:
            print(f"real-host benchmark skipped: {reason}")
            return
        run(args)


def run(args: argparse.Namespace) -> None:
    # Ctrl-C or a kill of the benchmark still removes every VM and stops the daemons.
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    base = Path(tempfile.mkdtemp(prefix=PREFIX, dir="/var/tmp"))
    base.chmod(0o755)
    workdir = Path(tempfile.mkdtemp(prefix="hc-bench-libvirtd-"))
    try:
        daemon = start_daemon(workdir)
    except DaemonError as exc:
        print(f"real-host benchmark: libvirtd did not start: {exc}")
        return
    try:
        start_vms(daemon, base, args.vms)
        time.sleep(10)  # the guests reach their idle loop
        libvirtd = psutil.Process(daemon.proc.pid)
        idle = Window({"libvirtd": libvirtd}).run(args.seconds)
        ours = measure_console(libvirtd, args.seconds, args.profile)
        theirs = ({"skipped": "--no-virt-manager"} if args.no_virt_manager
                  else measure_virt_manager(libvirtd, args.seconds))
        ticks = asyncio.run(measure_ticks(URI, ticks=10))
        report(args.vms, args.seconds, idle, ours, theirs, ticks)
    finally:
        problems = stop_daemon(daemon)
        shutil.rmtree(base, ignore_errors=True)
        shutil.rmtree(workdir, ignore_errors=True)
        if problems:
            print("clean-up:", *problems, sep="\n  ")


if __name__ == "__main__":
    main()
