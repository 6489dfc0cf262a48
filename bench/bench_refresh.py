"""Benchmark: start-up, refresh tick, idle CPU, RSS and libvirt calls per tick on big test hosts.

Prints a table; asserts nothing. Usage: python bench/bench_refresh.py [--sizes 1000 5000] [--cpu-seconds 60]

- start: process start to the first painted VM row, measured on a real pty (the app's own output)
- tick: collect + diff + table update as the app measures it (worker tick + UI-thread table
  update), median and p95 over 30 ticks under Textual's headless driver, 1 % of the VMs
  changing state between ticks
- CPU: % of one core used by the real process over --cpu-seconds at a 2 s refresh
- RSS: peak resident memory (VmHWM) of that process
- calls/tick: libvirt calls in a steady-state tick, counted at the binding (every method of
  libvirt-python's classes wrapped, tests/libvirt_calls.py); local accessors that make no round
  trip (UUIDString, name) are shown apart
"""

from __future__ import annotations

import argparse
import asyncio
import os
import pty
import select
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

from gen_host import generate  # noqa: E402
from tests.libvirt_calls import LibvirtCalls  # noqa: E402

TARGETS = {
    1000: {"start": 1.0, "tick_ms": 60, "cpu": 2.0, "rss": 150},
    5000: {"start": None, "tick_ms": 250, "cpu": None, "rss": None},
}


def write_host(n: int, workdir: Path) -> str:
    path = workdir / f"host-{n}.xml"
    path.write_text(generate(n), encoding="utf-8")
    return "test://" + str(path)


def spawn(uri: str, refresh: float = 2.0) -> tuple[subprocess.Popen, int]:
    master, slave = pty.openpty()
    os.set_blocking(master, False)
    import fcntl
    import struct
    import termios

    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 160, 0, 0))
    env = dict(os.environ, TERM="xterm-256color", COLUMNS="160", LINES="50")
    env["XDG_STATE_HOME"] = tempfile.mkdtemp(prefix="hc-bench-state-")
    proc = subprocess.Popen(
        [sys.executable, "-m", "hyperconsole", "--connect", uri, "--refresh", str(refresh)],
        stdin=slave, stdout=slave, stderr=slave, env=env, cwd=ROOT, start_new_session=True,
    )
    os.close(slave)
    return proc, master


def drain(master: int, until: bytes | None, timeout: float) -> tuple[bool, bytes]:
    seen = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.05)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            seen = (seen + chunk)[-200000:]
            if until is not None and until in seen:
                return True, seen
    return False, seen


def stop(proc: subprocess.Popen, master: int) -> None:
    try:
        os.write(master, b"q")
        proc.wait(5)
    except Exception:
        proc.kill()
        proc.wait()
    os.close(master)


def measure_process(uri: str, first_name: str, cpu_seconds: float) -> dict:
    t0 = time.perf_counter()
    proc, master = spawn(uri)
    painted, _ = drain(master, first_name.encode(), 30)
    start = time.perf_counter() - t0 if painted else float("nan")
    ps = psutil.Process(proc.pid)
    cpu = float("nan")
    if cpu_seconds > 0:
        drain(master, None, 3)  # let start-up settle before the idle window
        before = ps.cpu_times()
        t1 = time.perf_counter()
        drain(master, None, cpu_seconds)
        after = ps.cpu_times()
        cpu = ((after.user + after.system) - (before.user + before.system)) / (time.perf_counter() - t1) * 100
    rss = float("nan")
    try:
        for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                rss = int(line.split()[1]) / 1024
    except OSError:
        pass
    stop(proc, master)
    return {"start": start, "cpu": cpu, "rss": rss}


async def measure_ticks(uri: str, ticks: int = 30) -> dict:
    import libvirt

    from hyperconsole.app import HyperconsoleApp
    from hyperconsole.config import Config
    from hyperconsole.virt.connection import ConnectionManager

    manager = ConnectionManager(uri)
    manager.connect()
    app = HyperconsoleApp(manager, Config(refresh=3600))
    durations = []
    counted = LibvirtCalls()
    async with app.run_test(size=(160, 50)) as pilot:
        await app.workers.wait_for_complete()
        await pilot.pause()
        conn = manager.conn
        doms = conn.listAllDomains(0)
        running = [d for d in doms if d.state()[0] == libvirt.VIR_DOMAIN_RUNNING]
        movers = running[: max(1, len(doms) // 100)]

        async def one_tick() -> None:
            # Through the app's own path: worker collects, UI thread diffs into the table.
            await pilot.pause()
            await app.workers.wait_for_complete()
            app.poll_domains()
            await app.workers.wait_for_complete()
            await pilot.pause()

        for i in range(ticks):
            for dom in movers:  # outside the timing: something for the tick to update
                (dom.suspend if i % 2 == 0 else dom.resume)()
            await one_tick()
            durations.append(app.view.last_tick_seconds * 1000)
        with counted.patched():  # a steady tick, nothing changing: the calls it makes
            await one_tick()
            counted.clear()
            await one_tick()
    manager.close()
    durations.sort()
    return {
        "tick_median": statistics.median(durations),
        "tick_p95": durations[int(len(durations) * 0.95) - 1],
        "calls": sum(counted.remote.values()),
        "local": sum(counted.local.values()),
    }


def fmt(value: float, unit: str, target: float | None) -> str:
    if value != value:  # NaN
        return "n/a"
    mark = "" if target is None else (" ok" if value <= target else " OVER")
    return f"{value:.2f}{unit}{mark}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 5000])
    parser.add_argument("--cpu-seconds", type=float, default=60.0)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="hc-bench-") as tmp:
        for n in args.sizes:
            uri = write_host(n, Path(tmp))
            import libvirt

            conn = libvirt.open(uri)
            first = min(d.name() for d in conn.listAllDomains(0))
            conn.close()
            ticks = asyncio.run(measure_ticks(uri))
            proc = measure_process(uri, first, args.cpu_seconds if n <= 1000 else min(args.cpu_seconds, 20))
            rows.append((n, proc, ticks))
    targets_of = lambda n: TARGETS.get(n, {})  # noqa: E731
    print(f"{'VMs':>6} | {'start (s)':>12} | {'tick median (ms)':>17} | {'tick p95 (ms)':>14} | "
          f"{'CPU % 1 core':>13} | {'peak RSS (MiB)':>15} | {'calls/tick':>10} | {'local/tick':>10}")
    print("-" * 119)
    for n, proc, ticks in rows:
        t = targets_of(n)
        print(f"{n:>6} | {fmt(proc['start'], '', t.get('start')):>12} | "
              f"{fmt(ticks['tick_median'], '', t.get('tick_ms')):>17} | {fmt(ticks['tick_p95'], '', t.get('tick_ms')):>14} | "
              f"{fmt(proc['cpu'], '', t.get('cpu')):>13} | {fmt(proc['rss'], '', t.get('rss')):>15} | {ticks['calls']:>10} | "
              f"{ticks['local']:>10}")
    print(f"\nmachine: {os.cpu_count()} cores, Python {sys.version.split()[0]}; "
          f"CPU measured over {args.cpu_seconds:.0f} s at 1k (20 s at larger sizes), refresh 2 s")


if __name__ == "__main__":
    main()
