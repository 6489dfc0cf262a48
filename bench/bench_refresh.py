"""Benchmark: start-up, refresh tick, idle CPU, RSS and libvirt calls per tick on big test hosts,
each beside the floor under it on this machine.

Prints one table; asserts nothing. Usage:
    python bench/bench_refresh.py [--sizes 1000 10000] [--cpu-seconds 30] [--runs 3]

Console rows:
- start: process start to the first painted VM row, measured on a real pty (the app's own output)
- tick: collect + diff + table update as the app measures it (worker tick + UI-thread table
  update), median and p95 over 30 ticks under Textual's headless driver, 1 % of the VMs
  changing state between ticks
- CPU: % of one core used by the real process over --cpu-seconds at a 2 s refresh
- peak RSS: the most resident memory the process ever had (VmHWM); RSS: resident at the end of
  the CPU window (VmRSS)
- calls/tick: libvirt calls in a steady-state tick, counted at the binding (every method of
  libvirt-python's classes wrapped, tests/libvirt_calls.py); local accessors that make no round
  trip (UUIDString, name) are shown apart

Floor rows, measured in a bare Python process with Python + Textual + libvirt imported and
nothing of ours: start = libvirt's test driver opening the same host file, or the imports if
they take longer (the console does both at once); tick = one getAllDomainStats over every VM with the groups the sampler asks
for (steady: the median of five after a first); CPU = that call every 2 s; peak RSS and RSS = that process after the open and the call.
The imports alone are printed under the table.

Process figures (start, CPU, RSS) and floors are medians of --runs runs, so that other load on
the machine moves them less; run it on a quiet machine for figures to compare.
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

# The targets of the performance issue (test driver, this 2-core machine). RSS is what the idle
# console holds; the peak is printed beside it: on the test driver it is set by the driver's
# in-process parse of the host file (the floor row shows that peak in a bare process).
TARGETS = {
    1000: {"start": 0.8, "cpu": 0.5, "rss": 90},
    10000: {"start": 4.5, "tick_p95": 150, "cpu": 2.0, "rss": 230},
}
REFRESH = 2.0

FLOOR_SCRIPT = """
import json, sys, time
def status(field):
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
t0 = time.perf_counter()
import textual.app, libvirt
imports = time.perf_counter() - t0
import_rss = status("VmRSS")
if sys.argv[1] == "imports":
    print(json.dumps({"imports": imports, "import_rss": import_rss}))
    raise SystemExit
t0 = time.perf_counter()
conn = libvirt.open(sys.argv[1])
opened = time.perf_counter() - t0
calls = []
for _ in range(6):  # the first call after the open is slower: the median of the steady ones
    t0 = time.perf_counter()
    conn.getAllDomainStats(int(sys.argv[2]))
    calls.append(time.perf_counter() - t0)
stats = sorted(calls[1:])[2]
import ctypes
ctypes.CDLL(None).malloc_trim(0)  # what the driver holds, not what its parse left to glibc
print(json.dumps({"open": opened, "stats": stats, "peak_rss": status("VmHWM"), "rss": status("VmRSS")}))
"""


def write_host(n: int, workdir: Path) -> str:
    path = workdir / f"host-{n}.xml"
    path.write_text(generate(n), encoding="utf-8")
    return "test://" + str(path)


def spawn(uri: str, refresh: float = REFRESH) -> tuple[subprocess.Popen, int]:
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
    memory = {"peak_rss": float("nan"), "rss": float("nan")}
    try:
        for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines():
            for field, name in (("VmHWM:", "peak_rss"), ("VmRSS:", "rss")):
                if line.startswith(field):
                    memory[name] = int(line.split()[1]) / 1024
    except OSError:
        pass
    stop(proc, master)
    return {"start": start, "cpu": cpu, **memory}


def floor(argument: str) -> dict:
    """FLOOR_SCRIPT in a fresh interpreter: a host URI, or "imports" for the imports alone."""
    from hyperconsole.virt.sampler import STATS_GROUPS  # the groups the sampler asks for

    out = subprocess.run([sys.executable, "-c", FLOOR_SCRIPT, argument, str(STATS_GROUPS)], capture_output=True, text=True,
                         cwd=ROOT, timeout=120, check=True).stdout
    import json

    return json.loads(out)


def medians(runs: list[dict]) -> dict:
    return {key: statistics.median(run[key] for run in runs) for key in runs[0]}


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


def fmt(value: float | None, digits: int = 2, target: float | None = None) -> str:
    if value is None or value != value:  # not measured, or NaN
        return "–"
    mark = "" if target is None else (" ok" if value <= target else " OVER")
    return f"{value:.{digits}f}{mark}"


COLUMNS = (("VMs", 6), ("", 7), ("start (s)", 10), ("tick median (ms)", 16), ("tick p95 (ms)", 14),
           ("CPU % 1 core", 12), ("peak RSS (MiB)", 14), ("RSS (MiB)", 9), ("calls/tick", 10),
           ("local/tick", 10))


def line(cells: list[str]) -> str:
    return " | ".join(f"{cell:>{width}}" for cell, (_name, width) in zip(cells, COLUMNS))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--cpu-seconds", type=float, default=30.0)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="hc-bench-") as tmp:
        imports = medians([floor("imports") for _ in range(args.runs)])
        for n in args.sizes:
            uri = write_host(n, Path(tmp))
            import libvirt

            conn = libvirt.open(uri)
            first = min(d.name() for d in conn.listAllDomains(0))
            conn.close()
            ticks = asyncio.run(measure_ticks(uri))
            proc = medians([measure_process(uri, first, args.cpu_seconds) for _ in range(args.runs)])
            base = medians([floor(uri) for _ in range(args.runs)])
            rows.append((n, proc, ticks, base))
    print(line([name for name, _width in COLUMNS]))
    print("-+-".join("-" * width for _name, width in COLUMNS))
    for n, proc, ticks, base in rows:
        t = TARGETS.get(n, {})
        print(line([str(n), "console", fmt(proc["start"], 2, t.get("start")),
                    fmt(ticks["tick_median"], 1, t.get("tick_median")), fmt(ticks["tick_p95"], 1, t.get("tick_p95")),
                    fmt(proc["cpu"], 2, t.get("cpu")), fmt(proc["peak_rss"], 0),
                    fmt(proc["rss"], 0, t.get("rss")), str(ticks["calls"]), str(ticks["local"])]))
        print(line(["", "floor", fmt(max(base["open"], imports["imports"])), fmt(base["stats"] * 1000, 1), fmt(base["stats"] * 1000, 1),
                    fmt(base["stats"] / REFRESH * 100), fmt(base["peak_rss"], 0), fmt(base["rss"], 0), "1", "–"]))
    print(f"\nPython + Textual + libvirt imports alone: {imports['imports']:.2f} s, {imports['import_rss']:.0f} MiB RSS "
          f"(bare process). Machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}, "
          f"libvirt {libvirt.getVersion() // 1000000}.{libvirt.getVersion() // 1000 % 1000}; "
          f"refresh {REFRESH:.0f} s, CPU over {args.cpu_seconds:.0f} s; process figures and floors are medians of "
          f"{args.runs} runs. ok/OVER: against the performance issue's targets.")


if __name__ == "__main__":
    main()
